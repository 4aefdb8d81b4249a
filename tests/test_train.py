"""Recipes (schedules, MLP head), batching and a short real training run on a tiny model."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import distributed as D
from pipeline.loss import simcse_loss
from pipeline.modeling import collate, load_encoder
from pipeline.tiny import build_tiny_model
from pipeline.tokens import TokenColumn, tokenize_to_arrays, write_column
from pipeline.atomic import dumps_json
from pipeline.train import (DevSet, LossWatch, NonFiniteLoss, TrainSettings, batch_indices, epoch_order,
                            make_optimizer, make_scheduler, nonfinite_marker, optimizer_step, run_fingerprints,
                            steps_per_epoch, train_seed)

SENTENCES = [f"{city}에서 {n}번째 {thing}을 보았다." for city in ("서울", "부산", "대구", "광주", "인천")
             for n in range(1, 9) for thing in ("사람", "나무", "기차")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return build_tiny_model(corpus, root / "model", vocab_size=300, hidden=32, heads=2, intermediate=64)


def lrs(recipe: str, steps: int, epochs: int = 1, warmup_steps: int = 0) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=5e-5)
    sched = make_scheduler(opt, recipe=recipe, epochs=epochs, total_steps=steps, warmup_steps=warmup_steps)
    out = []
    for _ in range(steps):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def test_card_schedule_alternates_lr_and_zero():
    values = lrs("card", 6)
    assert values == pytest.approx([5e-5, 0.0, 5e-5, 0.0, 5e-5, 0.0], abs=1e-12)


def test_card_schedule_with_two_epochs_follows_cosine_period_four():
    values = lrs("card", 5, epochs=2)
    assert values == pytest.approx([5e-5, 2.5e-5, 0.0, 2.5e-5, 5e-5], abs=1e-12)


def test_simcse_schedule_decays_linearly_to_zero():
    values = lrs("simcse", 4)
    assert values == pytest.approx([5e-5, 3.75e-5, 2.5e-5, 1.25e-5])


def test_simcse_schedule_with_warmup_rises_then_decays_to_zero():
    # transformers' get_linear_schedule_with_warmup(warmup=2, total=6): 0, 1/2, 1, 3/4, 1/2, 1/4 of lr
    values = lrs("simcse", 6, warmup_steps=2)
    assert values == pytest.approx([0.0, 2.5e-5, 5e-5, 3.75e-5, 2.5e-5, 1.25e-5])


def _clipped_update(max_grad_norm: float, scale: float | None) -> torch.Tensor:
    """The change SGD(lr=1) makes to w = 0 under loss 3*w0 + 4*w1 (gradient (3, 4), norm 5)."""
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([w], lr=1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=scale) if scale is not None else None
    loss = (w * torch.tensor([3.0, 4.0])).sum()
    (scaler.scale(loss) if scaler is not None else loss).backward()
    optimizer_step(opt, scaler, [w], max_grad_norm)
    return -w.detach()


@pytest.mark.parametrize("scale", [None, 1024.0])
def test_gradient_clipping_caps_the_true_gradient_norm(scale):
    # clipped to norm 1: (3, 4) / 5; with a loss scaler the gradients are unscaled before clipping
    assert _clipped_update(1.0, scale).tolist() == pytest.approx([0.6, 0.8])
    # 0 = off (the card), and a threshold above the norm leaves the gradient as it is
    assert _clipped_update(0.0, scale).tolist() == pytest.approx([3.0, 4.0])
    assert _clipped_update(10.0, scale).tolist() == pytest.approx([3.0, 4.0])


def test_paper_variant_resolves_to_the_papers_settings():
    from pipeline.params import Params, train_config
    from tests.conftest import ROOT

    params = Params.load(ROOT / "params.yaml")
    paper, card = train_config(params, "bert-unsup-paper"), train_config(params, "bert-unsup")
    assert (paper.recipe, paper.lr, paper.batch_size, paper.max_len, paper.eval_steps, paper.max_grad_norm,
            paper.weight_decay, paper.warmup_steps, paper.epochs, paper.temp, paper.dropout, paper.pooler) == \
        ("simcse", 3e-5, 64, 32, 125, 1.0, 0.0, 0, 1, 0.05, 0.1, "cls")
    assert (card.recipe, card.lr, card.batch_size, card.max_len, card.eval_steps, card.max_grad_norm,
            card.weight_decay, card.warmup_steps) == ("card", 5e-5, 256, 64, 100, 0.0, 0.01, 0)


def test_weight_decay_groups(tiny):
    encoder, _ = load_encoder(tiny, use_head=True)
    opt = make_optimizer(encoder, lr=1e-3, weight_decay=0.01, device_type="cpu")
    decay, no_decay = opt.param_groups
    names = {id(p): n for n, p in encoder.named_parameters()}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(not (names[id(p)].endswith("bias") or "LayerNorm.weight" in names[id(p)]) for p in decay["params"])
    assert all(names[id(p)].endswith("bias") or "LayerNorm.weight" in names[id(p)] for p in no_decay["params"])
    assert any(names[id(p)] == "head.0.weight" for p in decay["params"])
    # the frozen BERT pooler is not optimised
    assert not any(".pooler." in names[id(p)] for g in opt.param_groups for p in g["params"])


@pytest.mark.parametrize("recipe, head_in_path", [("card", False), ("simcse", True)])
def test_mlp_head_is_in_the_training_gradient_path_only_for_simcse(tiny, recipe, head_in_path):
    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(tiny, use_head=recipe == "simcse", dropout=0.0)
    assert (encoder.head is not None) == head_in_path
    ids = tokenizer(SENTENCES[:6])["input_ids"]
    input_ids, mask = collate(ids, tokenizer.pad_token_id)
    z = encoder(input_ids, mask)
    simcse_loss(z, z.roll(1, 0), temp=0.05).backward()
    if head_in_path:
        assert encoder.head[0].weight.grad is not None and encoder.head[0].weight.grad.abs().sum() > 0
        # the evaluated embedding never goes through the head
        with torch.no_grad():
            assert not torch.allclose(encoder(input_ids, mask), encoder.embed(input_ids, mask))
    else:
        with torch.no_grad():
            torch.testing.assert_close(encoder(input_ids, mask), encoder.embed(input_ids, mask))


def test_epoch_order_and_batches():
    a, b = epoch_order(10, 42, 0), epoch_order(10, 42, 0)
    assert np.array_equal(a, b) and sorted(a.tolist()) == list(range(10))
    assert not np.array_equal(a, epoch_order(10, 42, 1))
    assert steps_per_epoch(10, 4, 1) == 3  # last partial batch kept, as the card's DataLoader
    assert steps_per_epoch(10, 4, 2) == 3  # a remainder of 2 splits over 2 processes
    assert steps_per_epoch(9, 4, 2) == 2  # a remainder of 1 cannot: dropped
    assert steps_per_epoch(9, 4, 1) == 3
    order = np.arange(10)
    assert batch_indices(order, 0, 4, D.DistInfo(0, 2)).tolist() == [0, 1]
    assert batch_indices(order, 0, 4, D.DistInfo(1, 2)).tolist() == [2, 3]
    assert batch_indices(order, 2, 4, D.DistInfo(1, 2)).tolist() == [9]


def _columns(folder: Path, tokenizer, sentences):
    folder.mkdir(parents=True, exist_ok=True)
    ids, off = tokenize_to_arrays(tokenizer, sentences, max_len=32, progress=False)
    write_column(folder, "sent", ids, off)
    half = len(sentences) // 2
    for name, part in (("dev1", sentences[:half]), ("dev2", sentences[half:2 * half])):
        ids, off = tokenize_to_arrays(tokenizer, part, max_len=32, progress=False)
        write_column(folder, name, ids, off)
    np.save(folder / "dev.scores.npy", np.linspace(0, 5, half))
    return [TokenColumn(folder, "sent")], DevSet.load(folder)


def _settings(**overrides) -> TrainSettings:
    """Small-run settings shared by the training tests; each test states only what it varies."""
    base = dict(epochs=1, batch_size=16, lr=1e-3, dropout=0.1, temp=0.05, pooler="mean", recipe="simcse",
                eval_steps=3, weight_decay=0.01, hard_negative_weight=0.0, max_len=32, checkpoint_steps=1000,
                log_steps=2)
    return TrainSettings(**{**base, **overrides})


def test_short_training_run_saves_the_selected_checkpoint(tiny, tmp_path):
    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    settings = _settings()
    logged = []
    result = train_seed(settings, seed=1, model_dir=tiny, columns=columns, dev=dev, out_dir=tmp_path / "out",
                        state_path=tmp_path / "state.pt", fingerprint_value="f", device=torch.device("cpu"),
                        log=lambda step, values: logged.append((step, values)), progress=False)
    assert result.total_steps == math.ceil(len(SENTENCES) / 16) == 8
    # step 0: the untrained model, scored before training (recorded and logged, never selected)
    assert [h["step"] for h in result.dev_history] == [0, 3, 6, 8]
    assert [s for s, v in logged if "dev/cosine_pearson" in v] == [0, 3, 6, 8]
    best = max(result.dev_history[1:], key=lambda h: h["cosine_spearman"])
    assert result.selected_step == best["step"]
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "modules.json").is_file()
    assert [s for s, v in logged if "train/loss" in v] == [2, 4, 6, 8]
    assert all("train/lr" in v for s, v in logged if "dev/cosine_pearson" not in v)
    # the saved weights are the selected step's: re-scoring them reproduces the selected dev score
    from pipeline.train import dev_scores

    saved, _ = load_encoder(tmp_path / "out", pooler="mean")
    rescored = dev_scores(saved, dev, pad_id=tokenizer.pad_token_id, batch_size=64, device=torch.device("cpu"))
    assert rescored["cosine_spearman"] == pytest.approx(best["cosine_spearman"], abs=1e-6)


def test_resuming_from_a_checkpoint_ends_identical(tiny, tmp_path):
    """A run that restarts from its last resumable state ends with the same weights and history."""
    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    settings = _settings(epochs=2, pooler="cls", recipe="card", eval_steps=4, checkpoint_steps=5, log_steps=3)
    common = dict(settings=settings, seed=3, model_dir=tiny, columns=columns, dev=dev,
                  state_path=tmp_path / "state.pt", device=torch.device("cpu"), progress=False)
    first = train_seed(**common, out_dir=tmp_path / "a", fingerprint_value="f1")
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # loads without a full unpickle
    assert state["step"] == 15 and first.total_steps == 16
    resumed = train_seed(**common, out_dir=tmp_path / "b", fingerprint_value="f1")
    assert resumed.resumed_from == 15
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert resumed.history == first.history and resumed.dev_history == first.dev_history
    # a state made with other settings is ignored, not resumed
    fresh = train_seed(**common, out_dir=tmp_path / "c", fingerprint_value="other")
    assert fresh.resumed_from == 0


# --- fp32 model selection ---------------------------------------------------------

def _tf32_flags() -> tuple:
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision())


@pytest.fixture
def tf32_on():
    """TF32 switched on as training on CUDA does; the previous flags are put back afterwards."""
    saved = _tf32_flags()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    yield (True, True, "high")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.set_float32_matmul_precision(saved[2])


def test_full_fp32_turns_tf32_off_and_restores_it(tf32_on):
    from pipeline.train import full_fp32

    with full_fp32():
        assert _tf32_flags() == (False, False, "highest")
    assert _tf32_flags() == tf32_on
    with pytest.raises(RuntimeError, match="boom"), full_fp32():
        raise RuntimeError("boom")
    assert _tf32_flags() == tf32_on
    torch.set_float32_matmul_precision("medium")  # any previous setting comes back, not a fixed one
    with full_fp32():
        assert torch.get_float32_matmul_precision() == "highest"
    assert torch.get_float32_matmul_precision() == "medium"


@pytest.mark.filterwarnings("ignore:torch.cuda.amp.GradScaler is enabled")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_dev_scoring_runs_in_fp32_whatever_the_training_precision(tiny, tmp_path, monkeypatch, tf32_on, precision):
    """CPU shows no autocast numerics, so a spy checks what dev scoring asks for: no autocast, TF32 off."""
    import pipeline.train as T

    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    monkeypatch.setattr(T, "autocast_dtype", lambda p, d: amp)  # training autocasts here, as it does on CUDA
    seen = []
    real = T.encode_ids

    def spy(*args, **kwargs):
        seen.append((kwargs.get("autocast_dtype"), _tf32_flags()))
        return real(*args, **kwargs)

    monkeypatch.setattr(T, "encode_ids", spy)
    result = train_seed(_settings(precision=precision), seed=1, model_dir=tiny, columns=columns, dev=dev,
                        out_dir=tmp_path / "out", state_path=tmp_path / "state.pt", fingerprint_value="f",
                        device=torch.device("cpu"), progress=False)
    assert len(seen) == len(result.dev_history) == 4  # steps 0, 3, 6, 8
    assert all(dtype is None and flags == (False, False, "highest") for dtype, flags in seen)
    assert _tf32_flags() == tf32_on  # training's own settings are back after each evaluation


def test_the_default_precision_is_the_cards_fp16_autocast_with_a_grad_scaler(tiny, tmp_path, monkeypatch):
    """`precision: fp16` (the default, in params.yaml and TrainSettings) autocasts to float16 on CUDA and
    trains through a GradScaler: every step's loss is scaled, the gradients unscaled before clipping, the
    step taken and the scale updated by it. bf16 and fp32 take no scaler; CPU never autocasts. (CPU cannot
    run CUDA autocast: a recording scaler stands in for torch's, the train loop itself is the real one.)"""
    import yaml

    import pipeline.train as T
    from tests.conftest import ROOT

    assert yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["precision"] == "fp16"
    assert T.TrainSettings.__dataclass_fields__["precision"].default == "fp16"
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert [T.autocast_dtype(p, cuda) for p in ("fp16", "bf16", "fp32")] == [torch.float16, torch.bfloat16, None]
    assert [T.autocast_dtype(p, cpu) for p in ("fp16", "bf16", "fp32")] == [None, None, None]

    calls: list[str] = []

    class RecordingScaler:  # torch's GradScaler with scale 1 and no overflow
        def __init__(self, device):
            calls.append(f"init {device}")

        def scale(self, loss):
            calls.append("scale")
            return loss

        def unscale_(self, optimizer):
            calls.append("unscale_")

        def step(self, optimizer):
            calls.append("step")
            optimizer.step()

        def update(self):
            calls.append("update")

        def state_dict(self):
            return {"scale": 1.0}

    monkeypatch.setattr(torch.amp, "GradScaler", RecordingScaler)
    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    steps = {}
    for precision in ("fp16", "bf16"):
        calls.clear()
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        monkeypatch.setattr(T, "autocast_dtype", lambda p, d, amp=amp: amp)  # as on CUDA
        result = train_seed(_settings(precision=precision, max_grad_norm=1.0), seed=1, model_dir=tiny,
                            columns=columns, dev=dev, out_dir=tmp_path / precision, state_path=tmp_path / "s.pt",
                            fingerprint_value=precision, device=cpu, progress=False)
        steps[precision] = (result.total_steps, list(calls))
    n = steps["fp16"][0]
    assert n > 1 and steps["fp16"][1] == ["init cuda"] + ["scale", "unscale_", "step", "update"] * n
    assert steps["bf16"][1] == []


# --- non-finite dev scores --------------------------------------------------------

def _dev_embeddings(monkeypatch, bad: dict[int, str]) -> None:
    """Make the n-th dev encoding (1-based) return constant (``const``) or NaN (``nan``) embeddings."""
    import pipeline.train as T

    real, calls = T.encode_ids, []

    def patched(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        kind = bad.get(len(calls))
        return out if kind is None else np.ones_like(out) if kind == "const" else np.full_like(out, np.nan)

    monkeypatch.setattr(T, "encode_ids", patched)


def test_non_finite_dev_scores_are_null_and_never_selected(tiny, tmp_path, monkeypatch):
    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    _dev_embeddings(monkeypatch, {2: "const", 3: "nan"})  # steps 3 and 6; steps 0 and 8 score normally
    result = train_seed(_settings(), seed=1, model_dir=tiny, columns=columns, dev=dev, out_dir=tmp_path / "out",
                        state_path=tmp_path / "state.pt", fingerprint_value="f", device=torch.device("cpu"),
                        progress=False)
    assert result.dev_history[1:3] == [{"step": 3, "cosine_pearson": None, "cosine_spearman": None},
                                      {"step": 6, "cosine_pearson": None, "cosine_spearman": None}]
    last = result.dev_history[3]
    assert last["step"] == 8 and all(isinstance(last[k], float) for k in ("cosine_pearson", "cosine_spearman"))
    assert result.selected_step == 8 and result.best_dev == {k: v for k, v in last.items() if k != "step"}
    assert not result.no_finite_dev
    assert not any(k.startswith("dev/") for step, values in result.history if step in (3, 6) for k in values)
    dumps_json({"dev": result.dev_history, "history": result.history})  # allow_nan=False: no NaN anywhere


def test_no_finite_dev_score_keeps_the_last_step(tiny, tmp_path, monkeypatch):
    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    common = dict(seed=1, model_dir=tiny, columns=columns, dev=dev, state_path=tmp_path / "state.pt",
                  fingerprint_value="f", device=torch.device("cpu"), progress=False)
    # reference: scored only at the end, so the saved model is the last step's weights
    last_only = train_seed(_settings(eval_steps=100), out_dir=tmp_path / "last", **common)
    assert last_only.selected_step == 8
    _dev_embeddings(monkeypatch, {2: "nan", 3: "nan", 4: "nan"})  # step 0's finite score does not count
    result = train_seed(_settings(), out_dir=tmp_path / "out", **common)
    assert result.no_finite_dev and result.selected_step == result.total_steps == 8 and result.best_dev == {}
    assert [h["step"] for h in result.dev_history] == [0, 3, 6, 8]
    assert isinstance(result.dev_history[0]["cosine_spearman"], float)
    assert [h["cosine_spearman"] for h in result.dev_history[1:]] == [None, None, None]
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == \
        (tmp_path / "last" / "model.safetensors").read_bytes()


# --- non-finite loss --------------------------------------------------------------

def test_loss_watch_reports_the_first_non_finite_step():
    watch = LossWatch(torch.device("cpu"))
    for step, value in enumerate([1.0, 2.0, 0.5], start=1):
        watch.update(torch.tensor(value), step)
    assert watch.first(D.DistInfo()) is None
    for step, value in enumerate([float("inf"), float("nan"), 3.0], start=4):
        watch.update(torch.tensor(value, requires_grad=True) * 1, step)
    assert watch.first(D.DistInfo()) == (4, float("inf"))


def nan_loss_at(monkeypatch, bad_step: int) -> None:
    """Make the loss of training step ``bad_step`` (1-based) NaN, keeping its graph (so the weights go NaN too)."""
    import pipeline.train as T

    real, calls = T.batch_loss, []

    def patched(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) == bad_step else loss

    monkeypatch.setattr(T, "batch_loss", patched)


def test_non_finite_loss_stops_and_a_changed_lr_resumes_from_the_last_checkpoint(tiny, tmp_path, monkeypatch):
    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    state_path = tmp_path / "state.pt"
    # checkpoints at 4 and 8, loss read at 5 and 8: the NaN of step 6 is noticed at step 8, before its checkpoint
    settings = _settings(recipe="card", checkpoint_steps=4, log_steps=5, eval_steps=5)
    inputs = dict(seed=2, tokens="t")
    fp, key = run_fingerprints(settings, **inputs)
    common = dict(seed=2, model_dir=tiny, columns=columns, dev=dev, state_path=state_path,
                  device=torch.device("cpu"), progress=False)
    nan_loss_at(monkeypatch, 6)
    with pytest.raises(NonFiniteLoss) as caught:
        train_seed(settings, out_dir=tmp_path / "a", fingerprint_value=fp, resume_key=key, **common)
    message = str(caught.value)
    assert caught.value.step == 6 and "\n" not in message
    assert message.startswith("seed 2: non-finite training loss (nan) at step 6 of 8; the checkpoint of step 4 "
                              f"is kept in {state_path}: change lr, precision")
    assert not (tmp_path / "a").exists()
    state = torch.load(state_path, weights_only=True)
    assert state["step"] == 4 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert json.loads(nonfinite_marker(state_path).read_text()) == \
        {"checkpoint_step": 4, "fingerprint": fp, "nonfinite_step": 6}
    monkeypatch.undo()

    # a change outside NONFINITE_RESUMABLE (dropout) starts over, even from a state marked as stopped
    other = _settings(recipe="card", checkpoint_steps=4, log_steps=5, eval_steps=5, dropout=0.2)
    fp_other, key_other = run_fingerprints(other, **inputs)
    assert key_other != key
    copy = tmp_path / "copy.pt"
    shutil.copy(state_path, copy)
    shutil.copy(nonfinite_marker(state_path), nonfinite_marker(copy))
    ignored = train_seed(other, out_dir=tmp_path / "b", fingerprint_value=fp_other, resume_key=key_other,
                         **{**common, "state_path": copy})
    assert ignored.resumed_from == 0

    # half the learning rate: resumes from step 4 with the schedule rescaled
    lower = _settings(recipe="card", checkpoint_steps=4, log_steps=5, eval_steps=5, lr=5e-4)
    fp2, key2 = run_fingerprints(lower, **inputs)
    assert key2 == key and fp2 != fp
    resumed = train_seed(lower, out_dir=tmp_path / "c", fingerprint_value=fp2, resume_key=key2, **common)
    assert resumed.resumed_from == 4
    assert resumed.setting_changes == [{"from_step": 4, "nonfinite_step": 6,
                                        "changed": {"lr": {"before": 1e-3, "after": 5e-4}}}]
    lrs_logged = [values["train/lr"] for _, values in resumed.history if "train/lr" in values]
    assert lrs_logged == pytest.approx([1e-3, 0, 1e-3, 0, 5e-4, 0, 5e-4, 0], abs=1e-12)
    assert (tmp_path / "c" / "model.safetensors").is_file()


# --- the loop's named steps, each on its own -----------------------------------------

def test_selection_takes_only_a_strictly_better_score_and_never_none():
    from pipeline.train import LoopState, consider

    loop, kept = LoopState(), []

    def weights(at):
        return lambda: kept.append(at) or {"w": torch.tensor([float(at)])}

    picks = [consider(loop, at, {"cosine_pearson": score, "cosine_spearman": 0.0}, "cosine_pearson", weights(at))
             for at, score in ((1, None), (2, 10.0), (3, 10.0), (4, 9.0), (5, None), (6, 11.5))]
    assert picks == [False, True, False, False, False, True]  # a tie (step 3) keeps the earlier step
    assert (loop.best_step, loop.best_score, kept) == (6, 11.5, [2, 6])  # weights copied only when selected
    assert loop.best_dev == {"cosine_pearson": 11.5, "cosine_spearman": 0.0} and loop.best_state["w"].item() == 6


def test_select_keeps_the_last_step_when_no_evaluation_was_finite():
    from pipeline.train import LoopState, consider, select

    loop = LoopState(step=8)
    for at in (3, 6, 8):
        consider(loop, at, {"cosine_spearman": None}, "cosine_spearman", lambda: {})
    assert select(loop) == (8, {}, True)
    consider(loop, 9, {"cosine_spearman": -50.0}, "cosine_spearman", lambda: {})  # any finite score beats -inf
    assert select(loop) == (9, {"cosine_spearman": -50.0}, False)


def test_stop_if_nonfinite_marks_the_state_on_disk_and_raises(tmp_path):
    from pipeline.train import LoopState, StateFile, stop_if_nonfinite

    file = StateFile(tmp_path / "state.pt", "fp")
    watch = LossWatch(torch.device("cpu"))
    common = dict(seed=4, total_steps=10, checkpoint_steps=5, info=D.DistInfo())
    watch.update(torch.tensor(1.0), 1)
    stop_if_nonfinite(watch, LoopState(on_disk=(5, "fp")), file, **common)  # all finite: nothing happens
    assert not nonfinite_marker(file.path).exists()
    watch.update(torch.tensor(float("inf")), 7)
    with pytest.raises(NonFiniteLoss, match=r"\(inf\) at step 7 of 10; the checkpoint of step 5 is kept") as caught:
        stop_if_nonfinite(watch, LoopState(on_disk=(5, "fp")), file, **common)
    assert caught.value.step == 7
    assert json.loads(nonfinite_marker(file.path).read_text()) == \
        {"checkpoint_step": 5, "fingerprint": "fp", "nonfinite_step": 7}
    nonfinite_marker(file.path).unlink()
    with pytest.raises(NonFiniteLoss, match="no checkpoint of this run yet"):  # nothing on disk: nothing marked
        stop_if_nonfinite(watch, LoopState(), file, **common)
    assert not nonfinite_marker(file.path).exists()


#: the state file's keys, as every version so far wrote them (older states must keep resuming)
STATE_KEYS = {"fingerprint", "resume_key", "settings", "step", "model", "optimizer", "scheduler", "scaler", "rng",
              "best_score", "best_step", "best_dev", "best_state", "dev_history", "history", "loss_sum",
              "loss_count", "setting_changes"}


def test_checkpoint_round_trip_keeps_the_file_format_and_the_loop(tiny, tmp_path):
    from pipeline.train import LoopState, StateFile, _rng_state, restore_checkpoint, save_checkpoint, setup

    settings = _settings(recipe="card")
    run = setup(settings, seed=1, model_dir=tiny, rows=40, device=torch.device("cpu"), info=D.DistInfo())
    loop = LoopState(step=2, best_score=12.5, best_step=2, best_dev={"cosine_pearson": 12.5},
                     best_state={"w": torch.arange(3.0)}, dev_history=[{"step": 2, "cosine_pearson": 12.5}],
                     history=[(1, {"train/lr": 1e-3}), (2, {"train/loss": 2.0})], loss_sum=torch.tensor(3.5),
                     loss_count=1, setting_changes=[{"from_step": 1}])
    file = StateFile(tmp_path / "sub" / "state.pt", "fp", "key")
    save_checkpoint(run, loop, file, [_rng_state()])
    state = torch.load(file.path, weights_only=True)
    assert set(state) == STATE_KEYS and (state["fingerprint"], state["resume_key"], state["step"]) == ("fp", "key", 2)
    expected_rng = torch.rand(4)  # the draws after the save, which a resume must repeat
    fresh = setup(settings, seed=1, model_dir=tiny, rows=40, device=torch.device("cpu"), info=D.DistInfo())
    with torch.no_grad():
        next(fresh.encoder.parameters()).add_(1.0)  # the restore must overwrite the weights
    torch.rand(10)  # and move the torch stream back to where it was saved
    restored = restore_checkpoint(fresh, state, None)
    assert torch.equal(torch.rand(4), expected_rng)
    for a, b in zip(run.encoder.state_dict().values(), fresh.encoder.state_dict().values()):
        assert torch.equal(a, b)
    assert (restored.step, restored.best_score, restored.best_step, restored.best_dev, restored.dev_history,
            restored.history, restored.loss_count, restored.setting_changes, restored.resumed_from,
            restored.on_disk) == (2, 12.5, 2, {"cosine_pearson": 12.5}, loop.dev_history, loop.history, 1,
                                  [{"from_step": 1}], 2, (2, "fp"))
    assert torch.equal(restored.best_state["w"], torch.arange(3.0)) and restored.loss_sum.item() == 3.5
    # states written before settings changes were recorded lack the key: they resume with none
    del state["setting_changes"]
    assert restore_checkpoint(fresh, state, None).setting_changes == []


# --- step 0: the untrained model's dev score -------------------------------------------

def test_a_step_0_score_that_beats_every_later_one_is_recorded_but_not_selected(tiny, tmp_path, monkeypatch):
    import pipeline.train as T

    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    scripted = iter([99.0, 10.0, 20.0, 15.0])  # steps 0, 3, 6, 8: step 0 is best, step 6 the best trained

    def dev_scores(*args, **kwargs):
        value = next(scripted)
        return {"cosine_pearson": value, "cosine_spearman": value}

    monkeypatch.setattr(T, "dev_scores", dev_scores)
    logged = []
    result = train_seed(_settings(), seed=1, model_dir=tiny, columns=columns, dev=dev, out_dir=tmp_path / "out",
                        state_path=tmp_path / "state.pt", fingerprint_value="f", device=torch.device("cpu"),
                        log=lambda step, values: logged.append((step, values)), progress=False)
    assert result.dev_history[0] == {"step": 0, "cosine_pearson": 99.0, "cosine_spearman": 99.0}
    assert logged[0] == (0, {"dev/cosine_pearson": 99.0, "dev/cosine_spearman": 99.0}) == result.history[0]
    assert result.selected_step == 6 and result.best_dev == {"cosine_pearson": 20.0, "cosine_spearman": 20.0}


def test_consider_never_selects_step_0():
    from pipeline.train import LoopState, consider

    loop = LoopState()
    assert not consider(loop, 0, {"cosine_pearson": 99.0}, "cosine_pearson", lambda: {})
    assert loop.best_state is None and loop.best_step == 0 and loop.best_score == -math.inf


def test_step_0_evaluation_leaves_the_trained_weights_unchanged(tiny, tmp_path, monkeypatch):
    """Scoring dev before training must not draw from the random streams training uses (dropout is on)."""
    import pipeline.train as T

    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    common = dict(seed=1, model_dir=tiny, columns=columns, dev=dev, state_path=tmp_path / "state.pt",
                  fingerprint_value="f", device=torch.device("cpu"), progress=False)
    settings = _settings(eval_steps=100, dropout=0.3)  # scored at 0 and 8 only: the saved model is step 8's
    with_step_0 = train_seed(settings, out_dir=tmp_path / "with", **common)
    real = T.evaluate
    monkeypatch.setattr(T, "evaluate", lambda run, loop, at, *a, **k: None if at == 0 else real(run, loop, at, *a, **k))
    without = train_seed(settings, out_dir=tmp_path / "without", **common)
    assert [h["step"] for h in with_step_0.dev_history] == [0, 8] and [h["step"] for h in without.dev_history] == [8]
    assert (tmp_path / "with" / "model.safetensors").read_bytes() == \
        (tmp_path / "without" / "model.safetensors").read_bytes()


# --- the progress bar's learning rate --------------------------------------------------

@pytest.mark.parametrize("log_steps", [2, 1])
def test_the_progress_bar_shows_the_highest_lr_since_its_last_update(tiny, tmp_path, monkeypatch, log_steps):
    """Under the card's schedule (lr, 0, lr, 0 ...) every even logging step used lr 0: the bar shows the
    highest rate since its previous update instead, and over the last two steps when it updates every step
    (no blinking lr, 0); dvclive's train/lr stays each step's own rate."""
    import pipeline.train as T

    postfixes = []

    class Bar:  # tqdm's interface as the loop uses it, recording the postfixes
        def __init__(self, *args, **kwargs):
            pass

        def set_postfix(self, **values):
            postfixes.append(values)

        def update(self, n):
            pass

        def close(self):
            pass

    monkeypatch.setattr(T, "tqdm", Bar)
    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    logged = []
    train_seed(_settings(recipe="card", log_steps=log_steps, lr=1e-3), seed=1, model_dir=tiny, columns=columns,
               dev=dev, out_dir=tmp_path / "out", state_path=tmp_path / "state.pt", fingerprint_value="f",
               device=torch.device("cpu"), log=lambda step, values: logged.append((step, values)))
    assert [p["lr_max"] for p in postfixes] == ["1.00e-03"] * (8 // log_steps)  # every logging step of 8
    lr_series = [(step, values["train/lr"]) for step, values in logged if "train/lr" in values]
    assert lr_series == [(k, 1e-3 if k % 2 else 0.0) for k in range(1, 9)]  # step k's update's own rate


def test_the_bar_lr_restarts_at_each_update(tiny, tmp_path, monkeypatch):
    """simcse's linear decay over 8 steps, bar updates every 3: each shows the first (highest) rate of its
    own three steps, not a maximum carried over from earlier ones."""
    import pipeline.train as T

    postfixes = []
    monkeypatch.setattr(T, "tqdm", lambda *a, **k: type("B", (), {
        "set_postfix": lambda self, **v: postfixes.append(v), "update": lambda self, n: None,
        "close": lambda self: None})())
    _, tokenizer = load_encoder(tiny)
    columns, dev = _columns(tmp_path / "tok", tokenizer, SENTENCES)
    train_seed(_settings(log_steps=3, lr=8e-3), seed=1, model_dir=tiny, columns=columns, dev=dev,
               out_dir=tmp_path / "out", state_path=tmp_path / "state.pt", fingerprint_value="f",
               device=torch.device("cpu"))
    # steps 1..8 use 8e-3 * (8 - k + 1) / 8: updates at 3 (steps 1-3), 6 (4-6) and 8 (7-8)
    assert [p["lr_max"] for p in postfixes] == ["8.00e-03", "5.00e-03", "2.00e-03"]


def test_threaded_batches_are_the_same_batches_collated_on_a_worker_thread():
    """CUDA runs collate the next batch on a thread (CPU runs, the tests, do not): same batches, same order."""
    import threading

    from pipeline.train import batches

    def batch_at(at):
        return at, threading.current_thread() is threading.main_thread()

    assert list(batches(batch_at, 2, 6, threaded=False)) == [(2, True), (3, True), (4, True), (5, True)]
    assert list(batches(batch_at, 2, 6, threaded=True)) == [(2, False), (3, False), (4, False), (5, False)]
    assert list(batches(batch_at, 6, 6, threaded=True)) == []  # resumed at the last step: nothing left
    stream = batches(batch_at, 0, 100, threaded=True)
    assert next(stream) == (0, False)
    before = threading.active_count()
    stream.close()  # as after a non-finite loss: the prefetch thread is stopped, not left running
    assert threading.active_count() == before - 1
