"""Contrastive training (SimCSE), unsupervised or with NLI hard negatives.

Read top to bottom: the optimizer and the two schedules, dev scoring, the
resumable state, the non-finite loss watch, then the loop in the shape of
nanoGPT's: :class:`LoopState` (what a checkpoint saves and a resume restores) and
the named steps :func:`train_seed` runs in order: :func:`setup`, :func:`resume`,
:func:`train_loop`, :func:`select`, :func:`save_selected`.

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

import json
import math
import os
import random
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from scipy import stats
from tqdm.auto import tqdm

from pipeline import distributed as D
from pipeline.atomic import write_json
from pipeline.devices import autocast_dtype  # defined beside executed_settings, which reports read
from pipeline.errors import UserError
from pipeline.loss import simcse_loss
from pipeline.modeling import SentenceEncoder, collate, encode_ids, load_encoder, pad_token_id, save_model
from pipeline.tokens import TokenColumn, content_key

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


@contextmanager
def full_fp32():
    """Within the block, CUDA float32 matrix products and convolutions run in full fp32 (TF32 off).

    Training enables TF32 for speed; model selection compares dev scores that
    differ in the second decimal, and the card scored dev in plain fp32. The
    previous settings are restored on exit (also after an error).
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32, torch.get_float32_matmul_precision())
    matmul.allow_tf32 = False
    cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        # matmul.allow_tf32 and the matmul precision are one setting seen twice: the precision goes last
        matmul.allow_tf32, cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def dev_scores(encoder: SentenceEncoder, dev: DevSet, *, pad_id: int, batch_size: int,
               device: torch.device) -> dict[str, float | None]:
    """Cosine Pearson and Spearman (x100) of the current encoder on the dev pairs.

    Always fp32 with TF32 off, whatever the training precision (the card selected
    its checkpoint on fp32 scores; ~3,000 sentences cost little). A score that is
    not finite (constant or non-finite embeddings) is ``None``, so it is never
    selected and always writes to JSON.
    """
    with full_fp32():
        emb = encode_ids(encoder, dev.ids1 + dev.ids2, pad_id=pad_id, batch_size=batch_size, device=device,
                         autocast_dtype=None).astype(np.float64)
    a, b = emb[: len(dev.ids1)], emb[len(dev.ids1):]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        # constant or non-finite input: scipy warns and returns nan, which is handled below
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        pearson = float(stats.pearsonr(dev.gold, cos).statistic) * 100
        spearman = float(stats.spearmanr(dev.gold, cos).statistic) * 100
    return {"cosine_pearson": _finite_or_none(pearson), "cosine_spearman": _finite_or_none(spearman)}


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
    """RNG states as tensors and plain Python values, so the checkpoint loads with weights_only=True.

    CUDA: this process's device only (every device's state would open a context on each GPU).
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(tuple(state["python"][:1]) + (tuple(state["python"][1]),) + tuple(state["python"][2:]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        if isinstance(state["cuda"], list):  # written by earlier versions: one state per visible device
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            torch.cuda.set_rng_state(state["cuda"])


def _rank_rng_state(saved: dict | list[dict], info: D.DistInfo) -> dict:
    """This process's RNG state from a checkpoint: one per process (a list), or one for all (older states)."""
    return saved[info.rank] if isinstance(saved, list) else saved


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def seed_dropout(seed: int, info: D.DistInfo) -> None:
    """Give every process but the first its own torch stream, after the model (and its head) is built.

    Identically seeded processes would draw identical dropout masks for the rows at the same place
    of their shards; one process on the global batch draws independent masks for every row. The
    first process keeps the stream a single-process run has, so one process trains as before.
    """
    if info.rank > 0:
        torch.manual_seed(seed + 1_000_003 * info.rank)


def fingerprint(obj: dict) -> str:
    """Stable hash of the settings and inputs a checkpoint is only valid for (see :func:`content_key`)."""
    return content_key(obj)


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


#: Settings that may differ when resuming a state kept by a run stopped on a non-finite loss:
#: they change neither the batch order nor the model's shape, so the saved weights, optimizer
#: moments and data position still apply (a new lr rescales the schedule, see
#: :func:`_apply_changed_settings`). Any other change starts training over.
NONFINITE_RESUMABLE = ("lr", "precision", "temp", "weight_decay", "hard_negative_weight")


def run_fingerprints(settings: "TrainSettings", **inputs) -> tuple[str, str]:
    """(fingerprint, resume key) of one training run.

    The fingerprint covers every setting and input (``inputs``: seed, token cache,
    base model files, process count): an interrupted run resumes only under it. The
    resume key leaves out :data:`NONFINITE_RESUMABLE`, so a state kept after a
    non-finite loss also resumes once those are changed.
    """
    full = asdict(settings)
    kept = {k: v for k, v in full.items() if k not in NONFINITE_RESUMABLE}
    return fingerprint({"settings": full, **inputs}), fingerprint({"settings": kept, **inputs})


def nonfinite_marker(state_path: Path) -> Path:
    """Beside the resumable state: which checkpoint a run stopped on a non-finite loss kept, and why."""
    return state_path.with_name(f"{state_path.stem}.nonfinite.json")


def _read_state(state_path: Path, *, fingerprint_value: str, resume_key: str | None, settings: "TrainSettings",
                announce: bool) -> tuple[dict | None, dict | None]:
    """The resumable state this run may continue, and the settings it changes (``None`` if none).

    Same fingerprint: an interrupted run, resumed as it was. Same resume key and a
    :func:`nonfinite_marker` naming this very state: resumed with the changed
    :data:`NONFINITE_RESUMABLE` settings, returned as ``{"from_step", "nonfinite_step",
    "changed": {name: {"before", "after"}}}``. Anything else is ignored.
    """
    if not state_path.is_file():
        return None, None
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    if state.get("fingerprint") == fingerprint_value:
        return state, None
    marker = nonfinite_marker(state_path)
    stopped = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
    if resume_key is not None and state.get("resume_key") == resume_key and \
            stopped.get("fingerprint") == state["fingerprint"] and stopped.get("checkpoint_step") == state["step"]:
        now = asdict(settings)
        changed = {k: {"before": state["settings"][k], "after": now[k]} for k in NONFINITE_RESUMABLE
                   if state["settings"][k] != now[k]}
        return state, {"from_step": state["step"], "nonfinite_step": stopped["nonfinite_step"], "changed": changed}
    if announce:
        print(f"ignoring {state_path}: made with other settings or inputs", flush=True)
    return None, None


def _apply_changed_settings(optimizer: torch.optim.Optimizer, scheduler, settings: "TrainSettings",
                            before: dict) -> None:
    """Move a restored optimizer and schedule to the new lr and weight decay (the state holds the old ones)."""
    ratio = settings.lr / before["lr"]
    for group in optimizer.param_groups:
        group["lr"] *= ratio  # both schedules are proportional to the base lr: scaling is exact
        group["initial_lr"] = settings.lr
    optimizer.param_groups[0]["weight_decay"] = settings.weight_decay  # group 0 decays (make_optimizer)
    scheduler.base_lrs = [settings.lr] * len(optimizer.param_groups)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]  # what get_last_lr() reports next


# --- non-finite loss --------------------------------------------------------------

class NonFiniteLoss(UserError):
    """Training stopped: the loss at ``step`` was not finite (the message says which checkpoint is kept)."""

    def __init__(self, message: str, *, step: int):
        super().__init__(message)
        self.step = step


class LossWatch:
    """The first step whose loss was not finite, tracked on the loss's device.

    Checking ``isfinite`` on the host every step would be a host sync per step
    (the GPU queue drains before the next batch is queued). Instead each step
    folds its loss into two device scalars with ``torch.where`` (no sync), and
    :meth:`first` reads them where the loop syncs anyway: logging, dev scoring,
    checkpoints and the last step. A bad step is therefore noticed within
    ``log_steps`` steps, always before the next checkpoint is written (so none
    holds non-finite weights), and the step reported is the first bad one, not
    the one where it was noticed. CPU runs use the same path.
    """

    NEVER = torch.iinfo(torch.int64).max

    def __init__(self, device: torch.device):
        self.step = torch.full((), self.NEVER, dtype=torch.int64, device=device)
        self.loss = torch.zeros((), dtype=torch.float32, device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        """Note ``loss`` (a scalar on the device) as the loss of ``step`` (1-based)."""
        loss = loss.detach().float()
        first = (self.step == self.NEVER) & ~torch.isfinite(loss)
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, loss, self.loss)

    def first(self, info: D.DistInfo) -> tuple[int, float | None] | None:
        """(step, loss) of the earliest non-finite loss on any process, or None. One host sync; collective."""
        earliest = int(D.min_across(self.step, info))
        if earliest == self.NEVER:
            return None
        return earliest, float(self.loss) if int(self.step) == earliest else None


def _nonfinite_error(*, seed: int, step: int, loss: float | None, total_steps: int, state_path: Path,
                     checkpoint_step: int | None, checkpoint_steps: int) -> NonFiniteLoss:
    value = "" if loss is None else f" ({loss})"
    change = ", ".join(NONFINITE_RESUMABLE[:-1]) + f" or {NONFINITE_RESUMABLE[-1]}"
    if checkpoint_step is None:
        kept = (f"no checkpoint of this run yet (one every checkpoint_steps = {checkpoint_steps}): change {change} "
                "and rerun (training starts over)")
    else:
        kept = f"the checkpoint of step {checkpoint_step} is kept in {state_path}: change {change} and rerun to " \
               "resume from it"
    return NonFiniteLoss(f"seed {seed}: non-finite training loss{value} at step {step} of {total_steps}; {kept}",
                         step=step)


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
    precision: str = "fp16"  # the card's --amp: fp16 autocast + GradScaler (CUDA only; CPU runs fp32)
    checkpoint_steps: int = 500
    log_steps: int = 10
    eval_batch_size: int = 256
    compile: bool = False
    deterministic: bool = False


@dataclass
class TrainResult:
    selected_step: int
    best_dev: dict[str, float | None]
    total_steps: int
    dev_history: list[dict] = field(default_factory=list)
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    resumed_from: int = 0
    wall_seconds: float = 0.0
    #: each resumption from a state kept after a non-finite loss, with the settings it changed
    setting_changes: list[dict] = field(default_factory=list)
    #: no dev evaluation gave a finite selection score: the last step was kept
    no_finite_dev: bool = False


def _describe_changes(changes: dict) -> str:
    return ", ".join(f"{k} {v['before']} -> {v['after']}" for k, v in changes["changed"].items())



# --- the loop's state: what a checkpoint saves and a resume restores -----------------

@dataclass
class LoopState:
    """Everything the loop carries from one step to the next (weights, optimizer and RNG aside).

    :meth:`to_checkpoint` and :meth:`from_checkpoint` map it to and from the resumable
    state file's keys, which keep the format earlier versions wrote (they still resume).
    """

    step: int = 0  # optimizer steps taken (1-based after the first)
    best_score: float = -math.inf  # the selection metric at ``best_step``; -inf: nothing selected yet
    best_step: int = 0
    best_dev: dict = field(default_factory=dict)  # the dev scores of ``best_step``
    best_state: dict | None = None  # the backbone's weights at ``best_step`` (CPU copies)
    dev_history: list[dict] = field(default_factory=list)  # {"step", "cosine_pearson", "cosine_spearman"}
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # what was logged, finite only
    loss_sum: torch.Tensor | None = None  # device scalar: the losses since the last log (no host sync per step)
    loss_count: int = 0
    resumed_from: int = 0
    setting_changes: list[dict] = field(default_factory=list)  # resumptions with changed settings
    on_disk: tuple[int, str] | None = None  # (step, fingerprint) of the state file a rerun may resume

    #: the attributes saved under their own names (``loss_sum`` is saved on the CPU)
    SAVED = ("step", "best_score", "best_step", "best_dev", "best_state", "dev_history", "history")

    def to_checkpoint(self) -> dict:
        """The loop's part of the state file (the keys earlier versions wrote)."""
        return {**{k: getattr(self, k) for k in self.SAVED}, "loss_sum": self.loss_sum.detach().cpu(),
                "loss_count": self.loss_count, "setting_changes": self.setting_changes}

    @classmethod
    def from_checkpoint(cls, state: dict, device: torch.device) -> "LoopState":
        """The loop as a state file left it; the run resumes at ``state["step"]``."""
        return cls(**{k: state[k] for k in cls.SAVED}, loss_sum=state["loss_sum"].to(device),
                   loss_count=state["loss_count"], resumed_from=state["step"],
                   setting_changes=list(state.get("setting_changes", [])),  # absent in early states
                   on_disk=(state["step"], state["fingerprint"]))


@dataclass
class Run:
    """What :func:`setup` builds for one seed: the model, its optimizer and schedule, and the fixed facts."""

    settings: TrainSettings
    seed: int
    device: torch.device
    info: D.DistInfo
    encoder: SentenceEncoder
    tokenizer: object
    forward: Callable  # the encoder, DDP-wrapped and/or compiled: the training view
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: object | None  # GradScaler under fp16, else None
    amp_dtype: object
    pad_id: int
    rows: int  # training rows (sentences or triplets)
    per_epoch: int
    total_steps: int


@dataclass
class StateFile:
    """The resumable state file of one run and the keys that say which runs may resume it."""

    path: Path
    fingerprint: str
    resume_key: str | None = None


# --- setup and resume ----------------------------------------------------------------

def setup(settings: TrainSettings, *, seed: int, model_dir: Path, rows: int, device: torch.device,
          info: D.DistInfo) -> Run:
    """Seed everything, load the base model and build the optimizer and schedule (nothing trained yet)."""
    seed_everything(seed)
    encoder, tokenizer = load_encoder(model_dir, pooler=settings.pooler, dropout=settings.dropout,
                                      use_head=settings.recipe == "simcse", device=device)
    seed_dropout(seed, info)  # the head's init above is the same everywhere; the dropout masks must not be
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
    forward = torch.compile(model, dynamic=True) if settings.compile else model
    per_epoch = steps_per_epoch(rows, settings.batch_size, info.world)
    total_steps = settings.epochs * per_epoch
    optimizer = make_optimizer(encoder, lr=settings.lr, weight_decay=settings.weight_decay, device_type=device.type)
    scheduler = make_scheduler(optimizer, recipe=settings.recipe, epochs=settings.epochs, total_steps=total_steps,
                               warmup_steps=settings.warmup_steps)
    return Run(settings=settings, seed=seed, device=device, info=info, encoder=encoder, tokenizer=tokenizer,
               forward=forward, optimizer=optimizer, scheduler=scheduler, scaler=scaler, amp_dtype=amp_dtype,
               pad_id=pad_token_id(tokenizer), rows=rows, per_epoch=per_epoch, total_steps=total_steps)


def save_checkpoint(run: Run, loop: LoopState, file: StateFile, rng: list[dict]) -> None:
    """Write the resumable state (atomically): weights, optimizer, schedule, scaler, every process's RNG, loop.

    Only plain values and tensors, so it loads with ``weights_only=True``; the settings are kept
    so a resume with changed :data:`NONFINITE_RESUMABLE` settings knows the old ones.
    """
    file.path.parent.mkdir(parents=True, exist_ok=True)
    loop_part = loop.to_checkpoint()
    _atomic_torch_save({
        "fingerprint": file.fingerprint, "resume_key": file.resume_key, "settings": asdict(run.settings),
        "step": loop_part.pop("step"), "model": run.encoder.state_dict(),
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else {}, "rng": rng, **loop_part,
    }, file.path)


def restore_checkpoint(run: Run, state: dict, changed: dict | None) -> LoopState:
    """Load a state file's weights, optimizer, schedule, scaler and this process's RNG into ``run``.

    Args:
        state: the loaded state file (see :func:`save_checkpoint`).
        changed: from :func:`_read_state`: the settings this resumption changes, or None.

    Returns:
        the loop as it was at ``state["step"]``, with ``changed`` appended to its setting changes.
    """
    run.encoder.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    loop = LoopState.from_checkpoint(state, run.device)
    _set_rng_state(_rank_rng_state(state["rng"], run.info))
    if changed is not None:
        _apply_changed_settings(run.optimizer, run.scheduler, run.settings, state["settings"])
        loop.setting_changes.append(changed)
    return loop


def resume(run: Run, file: StateFile, *, replay: Callable | None) -> LoopState:
    """The loop to continue: restored from ``file`` when it may be resumed (see :func:`_read_state`), else new.

    Every process must reach the same step (checked, collective).
    """
    info = run.info
    state, changed = _read_state(file.path, fingerprint_value=file.fingerprint, resume_key=file.resume_key,
                                 settings=run.settings, announce=info.is_main)
    if state is None:
        loop = LoopState(loss_sum=torch.zeros((), device=run.device))
    else:
        loop = restore_checkpoint(run, state, changed)
        if info.is_main:
            note = f" with changed settings ({_describe_changes(changed)})" if changed else ""
            print(f"resuming seed {run.seed} from step {loop.step}/{run.total_steps} ({file.path}){note}",
                  flush=True)
        if replay is not None and info.is_main:
            replay(loop.history)
    D.check_same(loop.step, info, what=f"{file.path}: the step to resume from",
                 hint="every machine must see the same resume folder (a shared filesystem), or remove it on all")
    return loop


# --- the steps of the loop -------------------------------------------------------------

def record(loop: LoopState, at: int, values: dict[str, float | None], *, log: Callable | None,
           info: D.DistInfo) -> None:
    """Append the finite ``values`` of step ``at`` to the history and pass them to ``log`` (main process).

    Only finite numbers reach the history and dvclive: both end up in JSON (allow_nan=False).
    """
    values = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
    if not values:
        return
    loop.history.append((at, values))
    if log is not None and info.is_main:
        log(at, values)


def consider(loop: LoopState, at: int, scores: dict[str, float | None], selection: str,
             weights: Callable[[], dict[str, torch.Tensor]]) -> bool:
    """Select step ``at`` if its ``selection`` score is strictly better than the best so far (as the card's
    code: a tie keeps the earlier step); a ``None`` score never wins, nor does step 0 (the untrained
    model, scored for the curves only: the card's code could not select it).

    Args:
        weights: returns CPU copies of the weights to keep; called only when ``at`` is selected.

    Returns:
        whether ``at`` is now the selected step.
    """
    score = scores[selection]
    if at < 1 or score is None or not score > loop.best_score:
        return False
    loop.best_score, loop.best_step, loop.best_dev = score, at, scores
    loop.best_state = weights()
    return True


def evaluate(run: Run, loop: LoopState, at: int, dev: DevSet, *, log: Callable | None) -> None:
    """Score dev at step ``at``, record it, and select the step if it is the best so far."""
    encoder = run.encoder
    # fp32, TF32 off, whatever the training precision (the card selected on fp32 scores)
    scores = dev_scores(encoder, dev, pad_id=run.pad_id, batch_size=run.settings.eval_batch_size, device=run.device)
    loop.dev_history.append({"step": at, **scores})
    record(loop, at, {f"dev/{k}": v for k, v in scores.items()}, log=log, info=run.info)
    consider(loop, at, scores, SELECTION[run.settings.recipe],
             lambda: {k: v.detach().to("cpu", copy=True) for k, v in encoder.backbone.state_dict().items()})


def stop_if_nonfinite(watch: LossWatch, loop: LoopState, file: StateFile, *, seed: int, total_steps: int,
                      checkpoint_steps: int, info: D.DistInfo) -> None:
    """Raise :class:`NonFiniteLoss` if any process saw a non-finite loss (collective: one host sync).

    The main process first marks the state file on disk (:func:`nonfinite_marker`), so a
    rerun with changed :data:`NONFINITE_RESUMABLE` settings may resume it.
    """
    found = watch.first(info)
    if found is None:
        return
    if loop.on_disk is not None and info.is_main:
        write_json(nonfinite_marker(file.path), {"checkpoint_step": loop.on_disk[0], "fingerprint": loop.on_disk[1],
                                                 "nonfinite_step": found[0]})
    raise _nonfinite_error(seed=seed, step=found[0], loss=found[1], total_steps=total_steps, state_path=file.path,
                           checkpoint_step=loop.on_disk[0] if loop.on_disk else None,
                           checkpoint_steps=checkpoint_steps)


def batch_source(run: Run, columns: Sequence[TokenColumn]) -> Callable[[int], Batch]:
    """``batch_at(step)``: this process's collated batch of a global step (the epoch's order is cached)."""
    orders: dict[int, np.ndarray] = {}
    settings, pin = run.settings, run.device.type == "cuda"

    def batch_at(at: int) -> Batch:
        epoch, in_epoch = divmod(at, run.per_epoch)
        if epoch not in orders:
            orders.clear()
            orders[epoch] = epoch_order(run.rows, run.seed, epoch)
        idx = batch_indices(orders[epoch], in_epoch, settings.batch_size, run.info)
        return prepare_batch([col.rows(idx) for col in columns], pad_id=run.pad_id, pin=pin)

    return batch_at


def batches(batch_at: Callable[[int], Batch], start: int, stop: int, *, threaded: bool):
    """Yield the batches of steps ``start`` .. ``stop - 1``. ``threaded`` (CUDA): the next batch is
    collated (and pinned) on a thread while the device runs this one."""
    if not threaded:
        for at in range(start, stop):
            yield batch_at(at)
        return
    with ThreadPoolExecutor(max_workers=1) as prefetch:
        upcoming = prefetch.submit(batch_at, start) if start < stop else None
        for at in range(start, stop):
            batch = upcoming.result()
            upcoming = prefetch.submit(batch_at, at + 1) if at + 1 < stop else None
            yield batch


def train_step(run: Run, batch: Batch) -> tuple[torch.Tensor, float]:
    """One optimizer step on ``batch``; returns (the loss, on the device; the learning rate the step used)."""
    settings = run.settings
    lr_now = run.scheduler.get_last_lr()[0]
    loss = batch_loss(run.forward, batch, temp=settings.temp, hard_negative_weight=settings.hard_negative_weight,
                      info=run.info, device=run.device, amp_dtype=run.amp_dtype)
    (run.scaler.scale(loss) if run.scaler is not None else loss).backward()
    optimizer_step(run.optimizer, run.scaler, run.encoder.parameters(), settings.max_grad_norm)
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    return loss, lr_now


def train_loop(run: Run, state: LoopState, *, columns: Sequence[TokenColumn], dev: DevSet, file: StateFile,
         log: Callable | None, progress: bool) -> None:
    """Train from ``state.step`` to the last step: log, score dev, watch the loss and checkpoint on schedule.

    Logged per step: ``train/lr``, the learning rate that step's update used; per logging step:
    ``train/loss``, the mean loss since the previous one. The progress bar shows that loss and
    ``lr_max``, the highest rate used since its previous update, and over at least the last two steps
    (the card's schedule alternates lr, 0: even logging steps would always read 0, and a bar updated
    every step would blink between lr and 0).
    """
    settings, info, total = run.settings, run.info, run.total_steps
    # for the bar (display only, not checkpointed): the highest rate since its last update, the steps since
    # then, and the previous step's rate
    lr_max, since, lr_before = 0.0, 0, 0.0
    watch = LossWatch(run.device)
    stream = batches(batch_source(run, columns), state.step, total, threaded=run.device.type == "cuda")
    run.encoder.train()
    bar = tqdm(total=total, initial=state.step, desc=f"train seed {run.seed}", unit="step",
               disable=not (progress and info.is_main))
    try:
        for batch in stream:
            loss, lr_now = train_step(run, batch)
            state.step += 1
            step = state.step
            state.loss_sum += loss.detach()
            state.loss_count += 1
            lr_max, since = max(lr_max, lr_now), since + 1
            watch.update(loss, step)
            at_log = step % settings.log_steps == 0 or step == total
            at_eval = step % settings.eval_steps == 0 or step == total
            at_checkpoint = step % settings.checkpoint_steps == 0
            if at_log or at_eval or at_checkpoint:  # where the loop syncs anyway, and before any checkpoint
                stop_if_nonfinite(watch, state, file, seed=run.seed, total_steps=total,
                                  checkpoint_steps=settings.checkpoint_steps, info=info)
            values = {"train/lr": lr_now}
            if at_log:
                # the only host sync of a training step, and only on logging steps
                mean_loss = float(D.mean_across(state.loss_sum / state.loss_count, info))
                values["train/loss"] = mean_loss
                state.loss_sum.zero_()
                state.loss_count = 0
                shown = max(lr_max, lr_before) if since == 1 else lr_max
                bar.set_postfix(loss=f"{mean_loss:.4f}", lr_max=f"{shown:.2e}")
                lr_max, since = 0.0, 0
            lr_before = lr_now
            record(state, step, values, log=log, info=info)
            if at_eval:
                evaluate(run, state, step, dev, log=log)
                run.encoder.train()
            bar.update(1)
            if at_checkpoint and step < total:
                rng = D.gather_objects(_rng_state(), info)  # every process's stream, each resumed as its own
                if info.is_main:
                    save_checkpoint(run, state, file, rng)
                    state.on_disk = (step, file.fingerprint)
            if at_checkpoint:
                D.barrier(info)
    finally:
        bar.close()
        stream.close()  # stops the prefetch thread, also after an error


def select(loop: LoopState) -> tuple[int, dict[str, float | None], bool]:
    """The step to keep: (step, its dev scores, whether no evaluation gave a finite score).

    With no finite score at any evaluation the last step is kept (rather than fail after training).
    """
    if loop.best_state is None:
        return loop.step, {}, True
    return loop.best_step, loop.best_dev, False


def save_selected(run: Run, loop: LoopState, out_dir: Path) -> None:
    """Put the selected weights back into the encoder and save it to ``out_dir`` (main process)."""
    if run.info.is_main:
        if loop.best_state is not None:
            run.encoder.backbone.load_state_dict(loop.best_state)
        save_model(run.encoder, run.tokenizer, out_dir, max_len=run.settings.max_len)
    D.barrier(run.info)


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
    resume_key: str | None = None,
) -> TrainResult:
    """Train one seed and save the selected checkpoint to ``out_dir``: setup, resume, loop, select, save.

    Args:
        settings: the run's hyperparameters.
        seed: seeds python/numpy/torch, the batch order and the head's init.
        model_dir: local base model folder (safetensors).
        columns: one :class:`TokenColumn` (unsupervised: each sentence is its own
            positive) or three (anchor, positive, hard negative).
        dev: pre-tokenized KorSTS dev pairs, scored before training (step 0, recorded but never
            selected; not again on resuming), every ``eval_steps`` and at the end.
        out_dir: where the selected model is saved (HF + sentence-transformers).
        state_path: the resumable checkpoint, written every ``checkpoint_steps``;
            if it exists with the same ``fingerprint_value`` training resumes from it.
        device: where to train.
        info: process rank and count (DDP).
        log: called with (step, {name: value}) on the main process for logging.
        replay: called once with the logged history when resuming (to rebuild logs).
        resume_key: from :func:`run_fingerprints`; lets a state kept after a
            non-finite loss resume with changed :data:`NONFINITE_RESUMABLE` settings.

    Returns:
        :class:`TrainResult` (selected step, its dev scores, history).

    Raises:
        NonFiniteLoss: a step's loss was not finite. Training stops; the last
            checkpoint (written before that step) is kept for a rerun to resume.
    """
    start_time = time.perf_counter()
    file = StateFile(state_path, fingerprint_value, resume_key)
    run = setup(settings, seed=seed, model_dir=model_dir, rows=len(columns[0]), device=device, info=info)
    state = resume(run, file, replay=replay)
    if state.step == 0:  # the untrained model's dev score: the curves' start, never selected (see consider)
        evaluate(run, state, 0, dev, log=log)
    train_loop(run, state, columns=columns, dev=dev, file=file, log=log, progress=progress)
    selected_step, best_dev, no_finite_dev = select(state)
    if no_finite_dev and info.is_main:
        print(f"warning: seed {seed}: no finite KorSTS dev {SELECTION[settings.recipe]} at any evaluation; "
              f"keeping the last step ({state.step})", flush=True)
    save_selected(run, state, out_dir)
    return TrainResult(selected_step=selected_step, best_dev=best_dev, total_steps=run.total_steps,
                       dev_history=state.dev_history, history=state.history, resumed_from=state.resumed_from,
                       wall_seconds=time.perf_counter() - start_time, setting_changes=state.setting_changes,
                       no_finite_dev=no_finite_dev)
