"""Two processes (gloo, CPU) train exactly like one process with the same global batch.

Run as a script (``python tests/test_distributed.py MODEL OUT SUPERVISED``), this file is the
worker each torchrun process executes in the two-node test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline import distributed as D
from pipeline.errors import UserError
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


def _torchrun_worker(model_dir: str, out: str, supervised: bool) -> None:
    """One process under torchrun: rank, world and rendezvous come from the environment torchrun sets."""
    info = D.from_env()
    D.init(info, "cpu")
    torch.set_num_threads(1)
    loss, grads = _step(Path(model_dir), info, supervised)
    if info.is_main:
        torch.save({"loss": loss, "grads": grads, "world": info.world}, out)
    D.shutdown(info)


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


def _check_same_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    info = D.DistInfo(rank=rank, world=world)
    outcome = {}
    D.check_same(7, info, what="same everywhere", hint="-")  # agreeing processes pass
    try:  # as when only node 0's disk holds a resumable state
        D.check_same(15 if rank == 0 else 0, info, what="checkpoints/x/state.pt: the step to resume from",
                     hint="share it")
    except UserError as exc:
        outcome["error"] = str(exc)
    torch.save(outcome, f"{out}.{rank}")
    dist.destroy_process_group()


def test_processes_that_disagree_about_resuming_all_stop_with_one_line(tmp_path):
    mp.spawn(_check_same_worker, args=(2, _free_port(), str(tmp_path / "out")), nprocs=2, join=True)
    expected = ("checkpoints/x/state.pt: the step to resume from differs between processes (rank 0: 15, rank 1: 0); "
                "share it")
    for rank in (0, 1):  # every process raises, so none is left waiting in a collective
        assert torch.load(tmp_path / f"out.{rank}", weights_only=True) == {"error": expected}


def test_single_node_launch_is_standalone_and_several_nodes_meet_at_node_0():
    target = ["-m", "stages.train", "--variant", "x"]
    assert D.torchrun_command(target, nproc=4)[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", *target]
    assert D.torchrun_command(target, nproc=2, nnodes=3, node_rank=1, master_addr="10.0.0.5", master_port=29400)[1:] \
        == ["-m", "torch.distributed.run", "--nnodes=3", "--node_rank=1", "--master_addr=10.0.0.5",
            "--master_port=29400", "--nproc_per_node=2", *target]


def test_train_stage_relaunches_under_torchrun_on_every_node(tmp_path, monkeypatch):
    """With nnodes > 1 the stage relaunches itself even with one process per node, at its own node_rank."""
    import yaml

    from stages import train

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))
    params.update(nnodes=2, node_rank=1, master_addr="10.0.0.5", master_port=29400, nproc=1, device="cpu")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    argv = ["--variant", "bert-unsup", "--tokens", "t", "--models", "m", "--out", "o", "--live", "l", "--resume", "r",
            "--params", str(tmp_path / "params.yaml")]
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.setattr(sys, "argv", ["stages/train.py", *argv])
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert train.main(argv) == 0
    assert calls == [[sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--node_rank=1",
                      "--master_addr=10.0.0.5", "--master_port=29400", "--nproc_per_node=1", "-m", "stages.train",
                      *argv]]


def test_two_nodes_equal_one_process_on_the_global_batch(tiny, tmp_path):
    """2 "machines" x 1 process on localhost: two torchrun launches that meet at node 0's address."""
    from tests.conftest import run_nodes  # here: this file is also the workers' script, run outside pytest

    single_loss, single_grads = _step(tiny, D.DistInfo(), supervised=True)
    out, port = tmp_path / "nodes.pt", _free_port()
    codes, logs = run_nodes([D.torchrun_command([__file__, str(tiny), str(out), "1"], nproc=1, nnodes=2, node_rank=rank,
                                                master_addr="127.0.0.1", master_port=port)
                             for rank in (1, 0)])  # node 1 first: it waits at the rendezvous until node 0 is up
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)
    nodes_result = torch.load(out, weights_only=True)
    assert nodes_result["world"] == 2
    assert nodes_result["loss"].item() == pytest.approx(single_loss.item(), abs=1e-5)
    assert set(nodes_result["grads"]) == set(single_grads)
    for name, grad in single_grads.items():
        torch.testing.assert_close(nodes_result["grads"][name], grad, rtol=1e-4, atol=1e-5, msg=name)


class _Interrupted(Exception):
    """Raised inside a step on every process at once, as a kill of the whole job would stop it."""


def _train_worker(rank: int, world: int, port: int, model_dir: str, cache: str, run_dir: str,
                  interrupt_at: int) -> None:
    """train_seed on 2 processes with dropout, optionally interrupted at a step and rerun (resuming)."""
    import hashlib

    import pipeline.train as T
    from pipeline.tokens import TokenColumn

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    info = D.DistInfo(rank=rank, world=world)
    settings = T.TrainSettings(epochs=3, batch_size=8, lr=1e-3, dropout=0.1, temp=0.05, pooler="cls", recipe="card",
                               eval_steps=3, weight_decay=0.0, hard_negative_weight=0.0, max_len=32, precision="fp32",
                               checkpoint_steps=2, log_steps=1, eval_batch_size=16)
    streams, real = [], T.batch_loss

    def batch_loss(*args, **kwargs):  # where each step's dropout masks are drawn
        if len(streams) + 1 == interrupt_at:
            streams.append("interrupted")
            raise _Interrupted
        streams.append(hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest())
        return real(*args, **kwargs)

    T.batch_loss = batch_loss
    run = Path(run_dir)
    common = dict(seed=42, model_dir=Path(model_dir), columns=[TokenColumn(cache, "sent")], dev=T.DevSet.load(cache),
                  out_dir=run / "out", state_path=run / "state.pt", fingerprint_value="test", device=torch.device("cpu"),
                  info=info, progress=False)
    try:
        T.train_seed(settings, **common)
    except _Interrupted:
        T.train_seed(settings, **common)
    torch.save({"streams": streams}, run / f"streams.{rank}")
    dist.destroy_process_group()


def test_processes_draw_their_own_dropout_masks_and_each_resumes_its_own(tiny, tmp_path):
    """With dropout on, 2 processes must not share a random stream (one process on the global batch draws
    independent masks for every row), and a run interrupted after a checkpoint must resume each process's
    own stream: bit-identical to the uninterrupted run."""
    import numpy as np
    from transformers import AutoTokenizer

    from pipeline.tokens import tokenize_to_arrays, write_column

    cache = tmp_path / "tokens"
    cache.mkdir()
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    for name, part in (("sent", SENTENCES), ("dev1", SENTENCES[:8]), ("dev2", SENTENCES[8:])):
        write_column(cache, name, *tokenize_to_arrays(tokenizer, part, max_len=32, progress=False))
    np.save(cache / "dev.scores.npy", np.linspace(0, 5, 8))
    runs = {}
    for label, interrupt_at in (("straight", 0), ("resumed", 6)):  # 6 steps, checkpoints at 2 and 4
        run_dir = tmp_path / label
        mp.spawn(_train_worker, args=(2, _free_port(), str(tiny), str(cache), str(run_dir), interrupt_at),
                 nprocs=2, join=True)
        runs[label] = {"weights": (run_dir / "out" / "model.safetensors").read_bytes(),
                       "streams": [torch.load(run_dir / f"streams.{r}", weights_only=True)["streams"] for r in (0, 1)]}
    straight, resumed = runs["straight"]["streams"], runs["resumed"]["streams"]
    assert len(straight[0]) == 6 and all(a != b for a, b in zip(*straight))  # own masks at every step
    # stopped in step 6; the rerun replays steps 5 and 6 from the checkpoint of step 4, each process from its
    # own saved stream
    for rank in (0, 1):
        assert resumed[rank][:6] == straight[rank][:5] + ["interrupted"]
        assert resumed[rank][6:] == straight[rank][4:]
    assert runs["resumed"]["weights"] == runs["straight"]["weights"]


if __name__ == "__main__":
    _torchrun_worker(sys.argv[1], sys.argv[2], sys.argv[3] == "1")


def _gather_grad_worker(rank: int, world: int, port: int, out: str) -> None:
    import warnings

    import torch.distributed.nn.functional as dist_nn

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    local = torch.randn(3, 4, generator=torch.Generator().manual_seed(rank))  # (B, H), different per process
    weights = torch.arange(world * 3 * 4, dtype=torch.float32).view(world * 3, 4) * (rank + 1)
    results = {}
    for name in ("ours", "torch"):
        x = local.clone().requires_grad_(True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if name == "ours":
                gathered = D.gather_with_grad(x, D.DistInfo(rank=rank, world=world))
            else:
                gathered = torch.cat(dist_nn.all_gather(x), dim=0)
        # a loss that differs per process, so the backward must sum the other process's gradient in
        (torch.sin(gathered) * weights).sum().backward()
        results[name] = {"gathered": gathered.detach(), "grad": x.grad,
                         "deprecated": any(issubclass(w.category, FutureWarning) for w in caught)}
    torch.save(results, f"{out}.{rank}")
    dist.destroy_process_group()


def test_gather_gradients_equal_torchs_deprecated_autograd_gather_on_gloo(tmp_path):
    """Our gather = torch.distributed.nn.functional.all_gather on gloo (values, gradients); torch's warns deprecated."""
    out = tmp_path / "gather"
    mp.spawn(_gather_grad_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    results = [torch.load(f"{out}.{rank}", weights_only=True) for rank in (0, 1)]
    locals_ = [torch.randn(3, 4, generator=torch.Generator().manual_seed(rank)) for rank in (0, 1)]
    weights = torch.arange(24, dtype=torch.float32).view(6, 4)
    for rank, result in enumerate(results):
        assert torch.equal(result["ours"]["gathered"], torch.cat(locals_))
        assert torch.equal(result["torch"]["gathered"], torch.cat(locals_))
        # by hand: d/dx of sum over processes p of (p + 1) * weights * sin(gathered), at this process's rows
        rows = slice(3 * rank, 3 * rank + 3)
        expected = (1 + 2) * weights[rows] * torch.cos(locals_[rank])
        torch.testing.assert_close(result["ours"]["grad"], expected)
        assert torch.equal(result["ours"]["grad"], result["torch"]["grad"])
        assert result["torch"]["deprecated"] and not result["ours"]["deprecated"]
