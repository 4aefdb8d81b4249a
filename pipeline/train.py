"""Contrastive training (SimCSE), unsupervised or with NLI hard negatives.

Read top to bottom: the optimizer and the two schedules, dev scoring, the
resumable state, then :func:`train_seed`, the loop itself.

Two recipes (param ``recipe``):
    ``card``   what the card's training code really did: no MLP head (its type
               check compared a module with strings, so the head never ran),
               ``CosineAnnealingLR(T_max=epochs)`` stepped every batch (the
               learning rate alternates lr, 0, lr, 0 ... with one epoch), model
               selection by KorSTS-dev cosine *Pearson*.
    ``simcse`` the paper's mechanisms: MLP head over [CLS] during training only,
               linear decay to 0, selection by KorSTS-dev cosine Spearman. The
               paper's hyperparameters (lr, batch, clipping ...) are params of their
               own: the ``bert-unsup-paper`` variant sets them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from pipeline import distributed as D
from pipeline.loss import simcse_loss
from pipeline.modeling import SentenceEncoder, collate, encode_ids, load_encoder, pad_token_id, save_model
from pipeline.tokens import TokenColumn

#: Parameter-name fragments excluded from weight decay (the card's ``no_decay``).
NO_DECAY = ("bias", "LayerNorm.weight")
SELECTION = {"card": "cosine_pearson", "simcse": "cosine_spearman"}


# --- optimizer and schedules -------------------------------------------------------

def make_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float, device_type: str) -> torch.optim.AdamW:
    """AdamW (eps 1e-8) with weight decay on all trainable weights except biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if any(nd in name for nd in NO_DECAY) else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # fused kernels on CUDA (one launch per step); foreach on CPU.
    fused = device_type == "cuda"
    return torch.optim.AdamW(groups, lr=lr, eps=1e-8, fused=fused, foreach=None if fused else True)


def make_scheduler(optimizer: torch.optim.Optimizer, *, recipe: str, epochs: int, total_steps: int,
                   warmup_steps: int = 0):
    """The learning-rate schedule, stepped once per batch.

    ``card``: ``CosineAnnealingLR(T_max=epochs, eta_min=0)`` stepped per batch, as
    the card's code did; with one epoch the rate alternates lr, 0, lr, 0.
    ``simcse``: linear warmup from 0 over ``warmup_steps`` (the paper: none), then
    linear decay to 0 at ``total_steps`` (transformers' ``get_linear_schedule_with_warmup``).
    """
    if recipe == "card":
        if warmup_steps:
            raise ValueError("the card recipe has no warmup")
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0)
    if recipe == "simcse":
        def factor(step: int) -> float:
            if step < warmup_steps:
                return step / warmup_steps
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    raise ValueError(f"unknown recipe {recipe!r}")


def optimizer_step(optimizer: torch.optim.Optimizer, scaler, parameters, max_grad_norm: float) -> None:
    """One optimizer step after ``backward``, clipping the gradients' global L2 norm to ``max_grad_norm``
    (0 = no clipping, as the card's code) first. Under fp16 the gradients are unscaled before
    clipping, so the threshold applies to the true gradients (as transformers' Trainer does)."""
    if max_grad_norm > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


# --- dev scoring ------------------------------------------------------------------

@dataclass
class DevSet:
    """Pre-tokenized KorSTS dev pairs for model selection."""

    ids1: list[np.ndarray]
    ids2: list[np.ndarray]
    gold: np.ndarray

    @classmethod
    def load(cls, folder: Path | str) -> "DevSet":
        folder = Path(folder)
        c1, c2 = TokenColumn(folder, "dev1"), TokenColumn(folder, "dev2")
        return cls(c1.rows(range(len(c1))), c2.rows(range(len(c2))), np.load(folder / "dev.scores.npy"))


def dev_scores(encoder: SentenceEncoder, dev: DevSet, *, pad_id: int, batch_size: int,
               device: torch.device, autocast_dtype) -> dict[str, float]:
    """Cosine Pearson and Spearman (x100) of the current encoder on the dev pairs."""
    emb = encode_ids(encoder, dev.ids1 + dev.ids2, pad_id=pad_id, batch_size=batch_size, device=device,
                     autocast_dtype=autocast_dtype).astype(np.float64)
    a, b = emb[: len(dev.ids1)], emb[len(dev.ids1):]
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {
        "cosine_pearson": float(stats.pearsonr(dev.gold, cos).statistic) * 100,
        "cosine_spearman": float(stats.spearmanr(dev.gold, cos).statistic) * 100,
    }


# --- batches ----------------------------------------------------------------------

def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled sentence order of one epoch; a pure function of (seed, epoch), so resumable."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    """Batches per epoch. The last partial batch is kept (as the card's DataLoader did); with
    several processes it is trimmed to a multiple of the process count."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest - rest % world > 0 else 0)


def batch_indices(order: np.ndarray, step_in_epoch: int, batch_size: int, info: D.DistInfo) -> np.ndarray:
    """This process's shard of the global batch at ``step_in_epoch``."""
    idx = order[step_in_epoch * batch_size:(step_in_epoch + 1) * batch_size]
    per = len(idx) // info.world
    return idx[info.rank * per:(info.rank + 1) * per]


# --- resumable state --------------------------------------------------------------

def _rng_state() -> dict:
    """RNG states as tensors and plain Python values, so the checkpoint loads with weights_only=True."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(tuple(state["python"][:1]) + (tuple(state["python"][1]),) + tuple(state["python"][2:]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def fingerprint(obj: dict) -> str:
    """Stable hash of the settings and inputs a checkpoint is only valid for."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# --- one batch --------------------------------------------------------------------

@dataclass
class Batch:
    """One process's shard of a batch, collated: G groups (2 views or 3 columns) of ``local`` rows."""

    input_ids: torch.Tensor  # (G * local, T), padded to the batch's longest sentence
    mask: torch.Tensor  # (G * local, T)
    local: int


def prepare_batch(groups: Sequence[Sequence[np.ndarray]], *, pad_id: int, pin: bool = False) -> Batch:
    """Collate token ids into one forward pass.

    Args:
        groups: token ids per column: one column (unsupervised: every sentence is
            encoded twice, dropout makes the two views) or three (anchor, positive,
            hard negative), each with this process's rows.
        pin: page-lock the tensors for an asynchronous copy to the GPU.
    """
    groups = list(groups)
    local = len(groups[0])
    if len(groups) == 1:
        groups = groups * 2
    input_ids, mask = collate([seq for group in groups for seq in group], pad_id)
    if pin:
        input_ids, mask = input_ids.pin_memory(), mask.pin_memory()
    return Batch(input_ids, mask, local)


def batch_loss(forward: Callable, batch: Batch, *, temp: float, hard_negative_weight: float, info: D.DistInfo,
               device: torch.device, amp_dtype) -> torch.Tensor:
    """The contrastive loss of this process's shard of a batch.

    Args:
        forward: the (possibly DDP-wrapped) encoder's training view, (N, T) -> (N, H).
        batch: from :func:`prepare_batch`.
        info: with several processes, positives and negatives are gathered from all
            of them, so the negatives span the global batch.

    Returns:
        scalar loss over this process's anchors.
    """
    input_ids = batch.input_ids.to(device, non_blocking=True)
    mask = batch.mask.to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        z = forward(input_ids, mask)  # (G * local, H)
    views = z.float().split(batch.local)
    positive = D.gather_with_grad(views[1], info)  # (world * local, H)
    negative = D.gather_with_grad(views[2], info) if len(views) > 2 else None
    return simcse_loss(views[0], positive, negative, temp=temp, hard_negative_weight=hard_negative_weight,
                       label_offset=info.rank * batch.local)


# --- the loop ---------------------------------------------------------------------

@dataclass
class TrainSettings:
    """The numbers one training run needs (from :class:`pipeline.params.TrainConfig`)."""

    epochs: int
    batch_size: int
    lr: float
    dropout: float
    temp: float
    pooler: str
    recipe: str
    eval_steps: int
    weight_decay: float
    hard_negative_weight: float
    max_len: int
    max_grad_norm: float = 0.0  # the card's code did not clip
    warmup_steps: int = 0
    precision: str = "bf16"
    checkpoint_steps: int = 500
    log_steps: int = 10
    eval_batch_size: int = 256
    compile: bool = False
    deterministic: bool = False


@dataclass
class TrainResult:
    selected_step: int
    best_dev: dict[str, float]
    total_steps: int
    dev_history: list[dict] = field(default_factory=list)
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    resumed_from: int = 0
    wall_seconds: float = 0.0


def autocast_dtype(precision: str, device: torch.device):
    """Autocast dtype for ``precision`` on ``device`` (CPU always runs fp32)."""
    if device.type != "cuda" or precision == "fp32":
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


def train_seed(
    settings: TrainSettings,
    *,
    seed: int,
    model_dir: Path,
    columns: Sequence[TokenColumn],
    dev: DevSet,
    out_dir: Path,
    state_path: Path,
    fingerprint_value: str,
    device: torch.device,
    info: D.DistInfo = D.DistInfo(),
    log: Callable[[int, dict[str, float]], None] | None = None,
    replay: Callable[[list[tuple[int, dict[str, float]]]], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train one seed and save the selected checkpoint to ``out_dir``.

    Args:
        settings: the run's hyperparameters.
        seed: seeds python/numpy/torch, the batch order and the head's init.
        model_dir: local base model folder (safetensors).
        columns: one :class:`TokenColumn` (unsupervised: each sentence is its own
            positive) or three (anchor, positive, hard negative).
        dev: pre-tokenized KorSTS dev pairs, scored every ``eval_steps`` and at the end.
        out_dir: where the selected model is saved (HF + sentence-transformers).
        state_path: the resumable checkpoint, written every ``checkpoint_steps``;
            if it exists with the same ``fingerprint_value`` training resumes from it.
        device: where to train.
        info: process rank and count (DDP).
        log: called with (step, {name: value}) on the main process for logging.
        replay: called once with the logged history when resuming (to rebuild logs).

    Returns:
        :class:`TrainResult` (selected step, its dev scores, history).
    """
    start_time = time.perf_counter()
    seed_everything(seed)
    use_head = settings.recipe == "simcse"
    encoder, tokenizer = load_encoder(model_dir, pooler=settings.pooler, dropout=settings.dropout,
                                      use_head=use_head, device=device)
    pad_id = pad_token_id(tokenizer)
    amp_dtype = autocast_dtype(settings.precision, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = not settings.deterministic
        torch.backends.cudnn.allow_tf32 = not settings.deterministic
    if settings.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    model: torch.nn.Module = encoder
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            encoder, device_ids=[device.index] if device.type == "cuda" else None)
    forward = model
    if settings.compile:
        forward = torch.compile(model, dynamic=True)

    n = len(columns[0])
    per_epoch = steps_per_epoch(n, settings.batch_size, info.world)
    total_steps = settings.epochs * per_epoch
    optimizer = make_optimizer(encoder, lr=settings.lr, weight_decay=settings.weight_decay, device_type=device.type)
    scheduler = make_scheduler(optimizer, recipe=settings.recipe, epochs=settings.epochs, total_steps=total_steps,
                               warmup_steps=settings.warmup_steps)
    selection = SELECTION[settings.recipe]

    step = 0
    best_score = -math.inf
    best_step = 0
    best_dev: dict[str, float] = {}
    best_state: dict[str, torch.Tensor] | None = None
    dev_history: list[dict] = []
    history: list[tuple[int, dict[str, float]]] = []
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    resumed_from = 0

    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") == fingerprint_value:
            encoder.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            step, best_score, best_step = state["step"], state["best_score"], state["best_step"]
            best_dev, dev_history, history = state["best_dev"], state["dev_history"], state["history"]
            best_state = state["best_state"]
            loss_sum = state["loss_sum"].to(device)
            loss_count = state["loss_count"]
            _set_rng_state(state["rng"])
            resumed_from = step
            if info.is_main:
                print(f"resuming seed {seed} from step {step}/{total_steps} ({state_path})", flush=True)
            if replay is not None and info.is_main:
                replay(history)
        elif info.is_main:
            print(f"ignoring {state_path}: made with other settings or inputs", flush=True)

    def record(at: int, values: dict[str, float]) -> None:
        history.append((at, values))
        if log is not None and info.is_main:
            log(at, values)

    def evaluate_dev(at: int) -> None:
        nonlocal best_score, best_step, best_dev, best_state
        scores = dev_scores(encoder, dev, pad_id=pad_id, batch_size=settings.eval_batch_size, device=device,
                            autocast_dtype=amp_dtype)
        dev_history.append({"step": at, **scores})
        record(at, {f"dev/{k}": v for k, v in scores.items()})
        if scores[selection] > best_score:  # strictly better, as the card's code
            best_score, best_step, best_dev = scores[selection], at, scores
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in encoder.backbone.state_dict().items()}

    orders: dict[int, np.ndarray] = {}

    def batch_at(at: int) -> Batch:
        epoch, in_epoch = divmod(at, per_epoch)
        if epoch not in orders:
            orders.clear()
            orders[epoch] = epoch_order(n, seed, epoch)
        idx = batch_indices(orders[epoch], in_epoch, settings.batch_size, info)
        return prepare_batch([col.rows(idx) for col in columns], pad_id=pad_id, pin=device.type == "cuda")

    # On CUDA the next batch is collated (and pinned) on a thread while the GPU runs this one.
    prefetch = ThreadPoolExecutor(max_workers=1) if device.type == "cuda" else None
    upcoming = prefetch.submit(batch_at, step) if prefetch and step < total_steps else None

    encoder.train()
    bar = tqdm(total=total_steps, initial=step, desc=f"train seed {seed}", unit="step",
               disable=not (progress and info.is_main))
    while step < total_steps:
        if upcoming is not None:
            batch = upcoming.result()
            upcoming = prefetch.submit(batch_at, step + 1) if step + 1 < total_steps else None
        else:
            batch = batch_at(step)
        lr_now = scheduler.get_last_lr()[0]
        loss = batch_loss(forward, batch, temp=settings.temp, hard_negative_weight=settings.hard_negative_weight,
                          info=info, device=device, amp_dtype=amp_dtype)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        optimizer_step(optimizer, scaler, encoder.parameters(), settings.max_grad_norm)
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1
        loss_sum += loss.detach()
        loss_count += 1
        values = {"train/lr": lr_now}
        if step % settings.log_steps == 0 or step == total_steps:
            # the only host sync of a training step, and only on logging steps
            mean_loss = float(D.mean_across(loss_sum / loss_count, info))
            values["train/loss"] = mean_loss
            loss_sum.zero_()
            loss_count = 0
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr_now:.2e}")
        record(step, values)
        if step % settings.eval_steps == 0 or step == total_steps:
            evaluate_dev(step)
            encoder.train()
        bar.update(1)
        if step % settings.checkpoint_steps == 0 and step < total_steps and info.is_main:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_torch_save({
                "fingerprint": fingerprint_value, "step": step, "model": encoder.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else {},
                "rng": _rng_state(), "best_score": best_score, "best_step": best_step, "best_dev": best_dev,
                "best_state": best_state, "dev_history": dev_history, "history": history,
                "loss_sum": loss_sum.detach().cpu(), "loss_count": loss_count,
            }, state_path)
        if step % settings.checkpoint_steps == 0:
            D.barrier(info)
    bar.close()
    if prefetch is not None:
        prefetch.shutdown()

    if info.is_main:
        encoder.backbone.load_state_dict(best_state)
        save_model(encoder, tokenizer, out_dir, max_len=settings.max_len)
    D.barrier(info)
    return TrainResult(selected_step=best_step, best_dev=best_dev, total_steps=total_steps,
                       dev_history=dev_history, history=history, resumed_from=resumed_from,
                       wall_seconds=time.perf_counter() - start_time)
