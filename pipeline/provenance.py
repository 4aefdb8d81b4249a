"""Where a number came from: code version, hardware and library versions, wall times."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path, PurePath


def code_version(root: Path | str = ".") -> dict:
    """Git commit of ``root`` and whether its tree differs from it.

    Files the pipeline itself rewrites (generated reports, dvc.lock, the
    .gitignore entries DVC adds) are excluded from the dirty check: running the
    pipeline must not make its own report claim a dirty tree.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports",
                     ":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status)}


def describe_code(code: dict) -> str:
    """One phrase for a :func:`code_version` result: "commit `abc123def456`[ with uncommitted changes]"."""
    if not code.get("commit"):
        return "unknown commit (not a git checkout)"
    return f"commit `{code['commit'][:12]}`" + (" with uncommitted changes" if code.get("dirty") else "")


def is_local_record(record: dict) -> bool:
    """True if a model record (fetch_model manifest, training.json ``base_model``, published manifest)
    describes a local folder rather than a hub repository."""
    if record.get("kind"):
        return record["kind"] == "local"
    source = record.get("source")
    return bool(source) and "://" not in source


def model_label(record: dict) -> str:
    """How reports and model cards name a model: a hub id as it is; a local folder by its folder name
    and the sha256 of its weights — never its path, which belongs to one machine (and may be absolute).

    Args:
        record: has ``model`` and ``source``/``kind``; the weights hash from ``weights_sha256`` or
            ``files["model.safetensors"]``.
    """
    if not is_local_record(record):
        return str(record["model"])
    sha = record.get("weights_sha256") or (record.get("files") or {}).get("model.safetensors")
    name = PurePath(str(record["model"])).name
    return f"{name} (local folder, weights sha256 {sha[:12]})" if sha else f"{name} (local folder)"


def model_alias(record: dict) -> str:
    """A model's short name in report tables: a hub id as it is, a local folder by its folder name
    (the report's legend pairs it with :func:`model_label`, which carries the weights hash)."""
    return str(record["model"]) if not is_local_record(record) else PurePath(str(record["model"])).name


def shown_config(training: dict) -> dict:
    """A training.json's ``config`` as reports and model cards show it: ``model`` named by
    :func:`model_label` of the run's base model (the config holds the param as given)."""
    cfg = dict(training.get("config", {}))
    base = training.get("base_model")
    if base and "model" in cfg:
        cfg["model"] = model_label(base)
    return cfg


def source_label(source: str) -> str:
    """A data source as reports show it: URLs and project-relative paths as written, an absolute
    local path or ``file://`` URL by its file name only (the sha256 beside it identifies the bytes)."""
    path = source[len("file://"):] if source.startswith("file://") else source
    if "://" in path or not PurePath(path).is_absolute():
        return source
    return f"local file {PurePath(path).name}"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment() -> dict:
    """Hardware and library versions of this process (stable on one machine)."""
    import torch

    cpu = cpu_model()
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except ImportError:
        pass
    return env


class Timer:
    """Wall-clock seconds of a block: ``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def write_timing(path: Path | str | None, stage: str, seconds: float, **extra) -> None:
    """Record a stage's wall time (kept apart from metrics and models, which must be reproducible)."""
    if path is None:
        return
    from pipeline.atomic import write_json

    write_json(path, {"stage": stage, "wall_seconds": round(seconds, 2), **extra})
