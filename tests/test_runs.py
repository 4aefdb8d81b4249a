"""The train stage end to end, in-process, on a tiny model: what it does when training goes wrong.

A NaN loss forced at a chosen step must end the stage with exit code 2 and one
``error:`` line, keep the checkpoint from before that step, and let a rerun with
a lower ``lr`` resume from it; the folders written at the end are checked before
the first step.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.project import deep_merge
from pipeline.tiny import build_tiny_model
from pipeline.tokens import TokenColumn, tokenize_to_arrays, write_column
from tests.conftest import run_nodes

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [f"{city}에서 {n}번째 {thing}을 보았다." for city in ("서울", "부산", "대구", "광주", "인천")
             for n in range(1, 9) for thing in ("사람", "나무", "기차")]
VARIANT = "tiny-unsup"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """What the fetch_model and tokenize stages would leave: data/models/<variant> (+ manifest) and
    data/tokens/<variant>."""
    from transformers import AutoTokenizer

    from stages.fetch_model import fetch_one

    root = tmp_path_factory.mktemp("train-stage")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    base = build_tiny_model(corpus, root / "tiny-bert", vocab_size=300, hidden=32, heads=2, intermediate=64)
    models = root / "data" / "models" / VARIANT
    fetch_one(str(base), None, models)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokens = root / "data" / "tokens" / VARIANT
    tokens.mkdir(parents=True)
    half = len(SENTENCES) // 2
    for name, part in (("sent", SENTENCES), ("dev1", SENTENCES[:half]), ("dev2", SENTENCES[half:])):
        ids, offsets = tokenize_to_arrays(tokenizer, part, max_len=32, progress=False)
        write_column(tokens, name, ids, offsets)
    np.save(tokens / "dev.scores.npy", np.linspace(0, 5, half))
    (tokens / "meta.json").write_text(json.dumps({"model": str(base), "max_len": 32, "data": "wiki",
                                                  "data_manifest": {"sentences": len(SENTENCES)}}))
    assert len(TokenColumn(tokens, "sent")) == 120
    return {"base": base, "models": models, "tokens": tokens}


def write_params(path: Path, base: Path, **changes) -> Path:
    """The project's params.yaml with a tiny run's settings: 8 steps, checkpoints at 4 and 8, loss read at 5."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    tiny = {"model": str(base), "epochs": 1, "max_len": 32, "batch_size": 16, "lr": 1.0e-3, "pooler": "mean",
            "eval_steps": 5, "checkpoint_steps": 4, "log_steps": 5, "eval_batch_size": 64,
            "device": "cpu", "variants": {VARIANT: {"data": "wiki"}}}
    path.write_text(yaml.safe_dump(deep_merge(params, {**tiny, **changes})), encoding="utf-8")
    return path


def run_train(inputs: dict, root: Path, params: Path) -> int:
    from stages.train import main

    return main(["--variant", VARIANT, "--tokens", str(inputs["tokens"]), "--models", str(inputs["models"]),
                 "--out", str(root / "models" / VARIANT), "--live", str(root / "dvclive" / VARIANT),
                 "--resume", str(root / "checkpoints" / VARIANT), "--params", str(params)])


def test_nan_loss_exits_2_with_one_line_and_a_lower_lr_resumes(inputs, tmp_path, monkeypatch, capsys):
    import pipeline.train as T

    monkeypatch.chdir(tmp_path)
    real, calls = T.batch_loss, []

    def nan_at_step_6(*args, **kwargs):  # the loss of step 6 is NaN, its gradients too
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == 6 else loss

    monkeypatch.setattr(T, "batch_loss", nan_at_step_6)
    assert run_train(inputs, tmp_path, write_params(tmp_path / "params.yaml", inputs["base"])) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    state = tmp_path / "checkpoints" / VARIANT / "seed-42" / "state.pt"
    assert errors == [f"error: variant {VARIANT}, seed 42: non-finite training loss (nan) at step 6 of 8; the "
                      f"checkpoint of step 4 is kept in {state}: change lr, precision, temp, weight_decay or "
                      "hard_negative_weight and rerun to resume from it"]
    assert "Traceback" not in err
    assert len(calls) == 8  # noticed at step 8 (the next loss read), before that step's checkpoint
    saved = torch.load(state, weights_only=True)
    assert saved["step"] == 4 and all(torch.isfinite(v).all() for v in saved["model"].values())
    assert not (tmp_path / "models" / VARIANT).exists()

    monkeypatch.setattr(T, "batch_loss", real)
    assert run_train(inputs, tmp_path, write_params(tmp_path / "params.yaml", inputs["base"], lr=5.0e-4)) == 0
    assert "resuming seed 42 from step 4/8" in capsys.readouterr().out
    record = json.loads((tmp_path / "models" / VARIANT / "seed-42" / "training.json").read_text())
    assert record["resumed_with_changed_settings"] == [
        {"from_step": 4, "nonfinite_step": 6, "changed": {"lr": {"before": 1e-3, "after": 5e-4}}}]
    assert record["config"]["lr"] == 5e-4 and record["selected_step"] in (5, 8)
    assert not (tmp_path / "checkpoints" / VARIANT).exists()  # scratch removed once the stage succeeds


def test_an_unwritable_output_stops_before_training(inputs, tmp_path, monkeypatch, capsys):
    import pipeline.runs as R

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(R, "train_seed", lambda *a, **k: pytest.fail("training started"))
    (tmp_path / "models").write_text("a file where the models folder goes\n")
    assert run_train(inputs, tmp_path, write_params(tmp_path / "params.yaml", inputs["base"])) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {tmp_path / 'models'}: exists and is not a folder; expected a folder this process can write to"]


def test_the_training_record_is_checked_before_the_first_step(inputs, tmp_path, monkeypatch):
    import pipeline.runs as R
    from pipeline.params import Params, train_config
    from stages.train import settings_for

    monkeypatch.setattr(R, "train_seed", lambda *a, **k: pytest.fail("training started"))
    cfg = train_config(Params.load(write_params(tmp_path / "params.yaml", inputs["base"])), VARIANT)
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        R.train_variant(settings_for(cfg), variant=VARIANT, model=cfg.model, data=cfg.data, seeds=cfg.seeds,
                        record_config={"lr": float("nan")}, tokens=inputs["tokens"], models=inputs["models"],
                        out=tmp_path / "models", live_dir=tmp_path / "live", resume=tmp_path / "ckpt",
                        device_name=cfg.device)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_train_stage_on_two_nodes_trains_the_one_process_model(inputs, tmp_path, monkeypatch):
    """Two "machines" on localhost, each running the stage's own command with its node_rank (one process each,
    the stage relaunching itself under torchrun), train the model one process trains on the global batch.

    Dropout is off so both runs see the same views; each node has its own output folders, as on separate
    disks: only node 0 writes the model and the dvclive log.
    """
    import sys

    from safetensors.torch import load_file

    monkeypatch.chdir(tmp_path)
    single = tmp_path / "single"
    assert run_train(inputs, single, write_params(tmp_path / "single.yaml", inputs["base"], dropout=0.0)) == 0

    port = _free_port()
    commands = []
    for rank in (1, 0):  # node 1 first: it waits at the rendezvous until node 0 is up
        params = write_params(tmp_path / f"node{rank}.yaml", inputs["base"], dropout=0.0, nnodes=2, node_rank=rank,
                              master_addr="127.0.0.1", master_port=port)
        node = tmp_path / f"node{rank}"
        commands.append([sys.executable, "-m", "stages.train", "--variant", VARIANT, "--tokens", str(inputs["tokens"]),
                         "--models", str(inputs["models"]), "--out", str(node / "models" / VARIANT),
                         "--live", str(node / "dvclive" / VARIANT), "--resume", str(node / "checkpoints" / VARIANT),
                         "--params", str(params)])
    codes, logs = run_nodes(commands, cwd=ROOT)
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert "--nnodes=2 --node_rank=0 --master_addr=127.0.0.1" in logs[1]  # the stage relaunched itself

    ours, theirs = (root / "models" / VARIANT / "seed-42" for root in (tmp_path / "node0", single))
    one, two = (json.loads((folder / "training.json").read_text()) for folder in (theirs, ours))
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["total_steps"] == one["total_steps"] == 8
    assert two["selected_step"] == one["selected_step"]
    assert [h["step"] for h in two["dev_history"]] == [h["step"] for h in one["dev_history"]] == [0, 5, 8]
    for a, b in zip(one["dev_history"], two["dev_history"]):
        for column in ("cosine_pearson", "cosine_spearman"):
            assert b[column] == pytest.approx(a[column], abs=1e-3)
    weights = {name: load_file(folder / "model.safetensors") for name, folder in (("one", theirs), ("two", ours))}
    base = load_file(inputs["base"] / "model.safetensors")
    assert set(weights["two"]) == set(weights["one"])
    moved = 0
    for name, tensor in weights["one"].items():
        torch.testing.assert_close(weights["two"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
        moved += name in base and not torch.equal(base[name], tensor)
    assert moved > 0  # training changed the weights, so equal weights mean equal training
    assert (tmp_path / "node0" / "dvclive" / VARIANT / "metrics.json").is_file()
    assert not (tmp_path / "node1" / "models").exists() and not (tmp_path / "node1" / "dvclive").exists()


def test_a_process_that_fails_alone_exits_without_waiting_at_a_barrier(inputs, tmp_path, monkeypatch):
    """With several processes, one that raises (an out-of-memory, a bad row) must exit so its torchrun agent
    ends the job; waiting at a barrier while the others wait in the step's collective hangs every machine
    until the backend's timeout (30 minutes with gloo, seen here before the fix)."""
    import pipeline.runs as R
    from pipeline.params import Params, train_config
    from stages.train import settings_for

    def fail(*args, **kwargs):
        raise RuntimeError("CUDA out of memory on this process only")

    barriers = []
    monkeypatch.setattr(R, "train_seed", fail)
    monkeypatch.setattr(R.D, "barrier", lambda info: barriers.append(info))
    cfg = train_config(Params.load(write_params(tmp_path / "params.yaml", inputs["base"])), VARIANT)
    with pytest.raises(RuntimeError, match="this process only"):
        R.train_variant(settings_for(cfg), variant=VARIANT, model=cfg.model, data=cfg.data, seeds=cfg.seeds,
                        record_config={}, tokens=inputs["tokens"], models=inputs["models"], out=tmp_path / "models",
                        live_dir=tmp_path / "live", resume=tmp_path / "ckpt", device_name=cfg.device)
    assert barriers == []
    assert (tmp_path / "live").is_dir() and not (tmp_path / "models").exists()
