"""Two processes (gloo, CPU) train exactly like one process with the same global batch."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline import distributed as D
from pipeline.modeling import load_encoder
from pipeline.tiny import build_tiny_model
from pipeline.train import batch_indices, batch_loss, prepare_batch

SENTENCES = [f"{a} {b}에 도착하였다." for a in ("철수는", "영희는", "민수는", "지수는") for b in ("서울", "부산", "대전", "제주")]
GLOBAL_BATCH = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _step(model_dir: Path, info: D.DistInfo, supervised: bool):
    """One training step of the real batch_loss on the global batch's shard; returns (loss, grads)."""
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(model_dir, pooler="cls", dropout=0.0)  # no dropout: deterministic views
    model = torch.nn.parallel.DistributedDataParallel(encoder) if info.enabled else encoder
    ids = [torch.tensor(x).numpy() for x in tokenizer(SENTENCES)["input_ids"]]
    idx = batch_indices(torch.arange(GLOBAL_BATCH).numpy(), 0, GLOBAL_BATCH, info)
    rows = [ids[i] for i in idx]
    groups = [rows, [ids[i + 8] for i in idx], [ids[(i + 3) % 16] for i in idx]] if supervised else [rows]
    batch = prepare_batch(groups, pad_id=tokenizer.pad_token_id)
    loss = batch_loss(model, batch, temp=0.05, hard_negative_weight=0.3, info=info, device=torch.device("cpu"),
                      amp_dtype=None)
    loss.backward()  # DDP averages the gradients over processes here
    grads = {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}
    return D.mean_across(loss.detach(), info), grads


def _worker(rank: int, world: int, port: int, model_dir: str, out: str, supervised: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    loss, grads = _step(Path(model_dir), D.DistInfo(rank=rank, world=world), supervised)
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, out)
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    (root / "corpus.txt").write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return build_tiny_model(root / "corpus.txt", root / "model", vocab_size=200, hidden=32, heads=2,
                            intermediate=64)


@pytest.mark.parametrize("supervised", [False, True])
def test_two_processes_equal_one_process_on_the_global_batch(tiny, tmp_path, supervised):
    single_loss, single_grads = _step(tiny, D.DistInfo(), supervised)
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(tiny), str(out), supervised), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    assert ddp["loss"].item() == pytest.approx(single_loss.item(), abs=1e-5)
    assert set(ddp["grads"]) == set(single_grads)
    for name, grad in single_grads.items():
        torch.testing.assert_close(ddp["grads"][name], grad, rtol=1e-4, atol=1e-5, msg=name)
    # the check can fail: without the cross-process gather the gradients differ
    assert any(g.abs().sum() > 0 for g in single_grads.values())


def test_gather_is_identity_on_one_process():
    x = torch.randn(3, 4, requires_grad=True)
    assert D.gather_with_grad(x, D.DistInfo()) is x


def _watch_worker(rank: int, world: int, port: int, out: str) -> None:
    from pipeline.train import LossWatch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    watch = LossWatch(torch.device("cpu"))
    bad = {0: 5, 1: 3}[rank]  # each process's first non-finite loss
    for step in range(1, 7):
        watch.update(torch.tensor(float("inf") if step >= bad else 1.0), step)
    torch.save({"first": watch.first(D.DistInfo(rank=rank, world=world))}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_the_first_non_finite_loss_is_agreed_across_processes(tmp_path):
    """Every process stops at the same, earliest bad step (else one would wait forever in a collective)."""
    out = tmp_path / "watch"
    mp.spawn(_watch_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    firsts = [torch.load(f"{out}.{rank}", weights_only=True)["first"] for rank in (0, 1)]
    assert firsts == [(3, None), (3, float("inf"))]  # the loss value is known where it happened
