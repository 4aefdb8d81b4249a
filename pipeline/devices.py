"""Which device a stage runs on: the `device` param, checked before any work, never a silent fallback.

``device: cuda`` (the default) on a machine without a visible GPU stops the
stage at once with one line saying how to opt in to the CPU; the card's run
is an hour of GPU time and would be days on a CPU, so falling back quietly is
never what the user meant. Every stage that loads a model prints the device
it runs on (the GPU's name), so a log shows where its numbers came from.
"""

from __future__ import annotations

from typing import Callable

from pipeline.errors import UserError


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def require_device(name: str, *, local_rank: int = 0, where: str = "params.yaml",
                   cuda_available: Callable[[], bool] = _cuda_available):
    """The ``torch.device`` for the ``device`` param ``name``; a UserError if it is not there.

    Args:
        name: ``cuda`` or ``cpu`` (validated by :func:`pipeline.params.device_setting`).
        local_rank: the CUDA device index of this process (torchrun's LOCAL_RANK).
        where: the params file, named in the error.
        cuda_available: probe, replaceable in tests.

    Raises:
        UserError: ``cuda`` on a machine where torch sees no GPU.
    """
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if not cuda_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise UserError(f"{where}: device = 'cuda' but torch {torch.__version__} ({build}) sees no GPU; "
                        "run on a GPU machine, or opt in to the CPU with `device: cpu` "
                        "(dvc exp run -S device=cpu; slow at the card's size)")
    return torch.device("cuda", local_rank)


def describe(device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB)`` or ``cpu (<model name>, N threads)``."""
    import torch

    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{device} ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
    from pipeline.provenance import cpu_model

    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"


def announce(device, stage: str) -> None:
    """Print the device a stage runs on (one line in the stage's log)."""
    print(f"{stage}: device {describe(device)}", flush=True)


def autocast_dtype(precision: str, device):
    """Autocast dtype for ``precision`` on ``device`` (a torch.device); None means fp32 (CPU always runs fp32)."""
    import torch

    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


def executed_settings(precision: str, deterministic: bool, device) -> dict:
    """What a run executed, as reports show it beside the requested params: the autocast precision
    (``fp32`` when :func:`autocast_dtype` gives none, as on CPU) and whether kernels were deterministic
    (CPU kernels are, whatever the param says)."""
    import torch

    dtype = autocast_dtype(precision, device)
    name = "fp32" if dtype is None else ("bf16" if dtype is torch.bfloat16 else "fp16")
    return {"precision": name, "deterministic": bool(deterministic) or device.type == "cpu"}
