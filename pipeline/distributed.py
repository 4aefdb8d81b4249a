"""Data-parallel training helpers: process info and a differentiable all-gather.

SimCSE's negatives must span the global batch: every process embeds its shard
of the batch, gathers the positives (and hard negatives) of all processes, and
scores its own anchors against all of them. With the all-gather's backward
summing gradients across processes and DDP averaging parameter gradients, N
processes x B sentences train exactly like one process with N x B (tested on
CPU with gloo).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist

from pipeline.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; ``world == 1`` means no torch.distributed."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> DistInfo:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK (defaults: a single process)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def torchrun_command(target: Sequence[str], *, nproc: int, nnodes: int = 1, node_rank: int = 0,
                     master_addr: str | None = None, master_port: int = 29500) -> list[str]:
    """The ``torchrun`` command that starts ``nproc`` copies of ``target`` on this node.

    Args:
        target: what each process runs, e.g. ``["-m", "stages.train", *args]`` or a script and its args.
        nproc: processes on this node (one per GPU).
        nnodes: machines; with one, torchrun picks a free local port itself (``--standalone``).
        node_rank: this machine's place, 0 .. nnodes - 1; node 0 hosts the rendezvous.
        master_addr, master_port: node 0's address, which every node must reach.

    Returns:
        argv for :func:`subprocess.call`; ranks are node_rank * nproc + local rank.
    """
    if nnodes == 1:
        topology = ["--standalone"]
    else:
        topology = [f"--nnodes={nnodes}", f"--node_rank={node_rank}", f"--master_addr={master_addr}",
                    f"--master_port={master_port}"]
    return [sys.executable, "-m", "torch.distributed.run", *topology, f"--nproc_per_node={nproc}", *target]


def init(info: DistInfo, device_type: str) -> None:
    """Initialise the default process group (nccl on CUDA, gloo on CPU) if ``info.enabled``."""
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def check_same(value, info: DistInfo, *, what: str, hint: str) -> None:
    """Stop every process with one :class:`UserError` line unless all hold the same ``value``.

    Guards decisions each process makes from its own disk (resume or not, from which step):
    on several machines a folder may exist on one node and not another, and processes that
    disagree would deadlock in the next collective instead of failing.
    """
    if not info.enabled:
        return
    values = gather_objects(value, info)
    if any(v != values[0] for v in values):
        shown = ", ".join(f"rank {rank}: {v}" for rank, v in enumerate(values))
        raise UserError(f"{what} differs between processes ({shown}); {hint}")


def gather_objects(value, info: DistInfo) -> list:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` on one process."""
    if not info.enabled:
        return [value]
    values: list = [None] * info.world
    dist.all_gather_object(values, value)
    return values


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over processes and keeps this shard's.

    Written out because torch's autograd gathers are deprecated: on torch 2.13
    ``torch.distributed.nn.functional.all_gather`` works on gloo and nccl and gives
    the same gradients (tests/test_distributed.py compares them), but warns that it
    is deprecated in favour of the private ``torch.distributed._functional_collectives``,
    whose autograd gather has itself been renamed once (``all_gather_tensor_autograd``
    -> ``all_gather_single_autograd``). These ten lines use only the stable
    ``dist.all_gather`` and ``dist.all_reduce``.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # (B, H) -> (world * B, H)
        world, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.rows = rank, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def gather_with_grad(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """(B, H) local rows -> (world * B, H) rows of every process, in rank order; identity on one process."""
    if not info.enabled:
        return tensor
    return _GatherWithGrad.apply(tensor)


def mean_across(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Average a (detached) tensor over processes, for logging."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / info.world


def min_across(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The minimum of a (detached) tensor over processes."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return value
