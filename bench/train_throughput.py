"""Training and encoding throughput: the pipeline's loop against the card code's loop.

Builds a randomly initialised BERT from a preset (or ``--config``), with a
WordPiece tokenizer over a synthetic Korean-like vocabulary, and synthetic
sentences whose token lengths follow :data:`LENGTH_HISTOGRAM` (Korean
Wikipedia-like; nothing downloaded, no real text). Same init, same sentences,
same batch order for both loops:

* ``ours``: :func:`pipeline.train.train_seed` itself, fed a pre-tokenized token
  cache (:mod:`pipeline.tokens`): dynamic padding to the batch's longest
  sentence, foreach AdamW on CPU / fused on CUDA, :func:`pipeline.loss.simcse_loss`,
  bf16 autocast + TF32 on CUDA, loss read back every 10 steps. Steps are timed
  through its ``log`` callback between two loss read-backs (host syncs), so
  model load, the final dev scoring and the save fall outside the window.
* ``reference``: the card's training code: the collator tokenizes raw
  sentences every step (``padding="max_length"``, 64), both views as a
  (B, 2, 64) batch flattened, fp32 on CPU (fp16 autocast + GradScaler on CUDA),
  AdamW with ``foreach=False``, ``loss.item()`` every step,
  ``nn.CrossEntropyLoss`` over cosine / temp.

Encoding: ``ours`` is :func:`pipeline.modeling.encode` (tokenizes each distinct
sentence once, then length-sorted batches padded to their longest, inference_mode);
``reference`` tokenizes in input order with padding to 64 under no_grad. Both
include tokenization and run fp32, as the evaluation does.

Each measurement runs in a fresh process, so CPU peak RSS (getrusage) is per
measurement; it includes the ~0.4 GB of an imported torch. On CUDA peak memory
is ``torch.cuda.max_memory_allocated``. Tokens are real (non-pad) tokens through
the encoder: in training each sentence counts twice (two dropout views). MFU
(CUDA only) = 6 (training) or 2 (encoding) x non-embedding parameters x tokens/s
over the chip's dense bf16 peak; attention's T^2 term is left out (small at T <= 64).

Usage (from the repository root)::

    python bench/train_throughput.py --preset tiny --batch-size 64 --steps 30
    python bench/train_throughput.py --preset minilm --batch-size 32 --steps 20
    python bench/train_throughput.py --preset bert-base --batch-size 256 --steps 50 --device cuda
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.provenance import code_version, cpu_model, describe_code

#: BertConfig keyword arguments of each preset.
PRESETS = {
    # pipeline.tiny's smoke model
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                 vocab_size=4000, max_position_embeddings=128),
    # all-MiniLM-L6-v2's shape
    "minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                   vocab_size=30522, max_position_embeddings=512),
    # klue/bert-base's shape, the card's model
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                      vocab_size=32000, max_position_embeddings=512),
}

#: Token lengths ([CLS] and [SEP] included) of Korean Wikipedia sentences: (bin start, count), bins of 4.
#: Recorded once from the 162 real Korean Wikipedia sentences of the shared kowiki-sample, tokenized by a
#: 32,000-piece WordPiece (klue/bert-base's vocabulary size) built with pipeline.tiny.wordpiece_vocab from the
#: Korean text of KorSTS and XNLI-ko; mean 27.1, min 4, max 48. Only these counts are kept. A sample this
#: small misses the long tail of the 1M-sentence corpus, where some sentences reach the 64-token cap.
LENGTH_HISTOGRAM = ((4, 1), (8, 3), (12, 5), (16, 17), (20, 26), (24, 38), (28, 29), (32, 18), (36, 12),
                    (40, 11), (44, 1), (48, 1))
BIN_WIDTH = 4

#: Dense bf16 peak FLOP/s by device-name fragment, first match wins (vendor datasheets).
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # klue/bert-base's order: [PAD] = 0
#: Korean particles and endings, as WordPiece suffixes; their syllables never occur in stems, so a
#: word is exactly one stem token plus at most one suffix token.
SUFFIXES = ("은", "는", "이", "가", "을", "를", "에", "의", "에서", "으로", "로", "와", "과", "도", "이다", "였다",
            "하였다", "한", "된", "까지")
MAX_LEN = 64  # the card's max length
TEMP = 0.05  # the card's temperature
LR = 5e-5  # the card's learning rate
WEIGHT_DECAY = 0.01  # the card's weight decay
LOG_STEPS = 10  # the pipeline's default: loss read back every 10 steps


# --- model, tokenizer and sentences -----------------------------------------------

def stems(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct 1-3 syllable Hangul strings avoiding every suffix syllable."""
    banned = {ord(c) for s in SUFFIXES for c in s}
    syllables = [chr(c) for c in range(0xAC00, 0xD7A4) if c not in banned]
    out: dict[str, None] = {}
    while len(out) < count:
        word = "".join(syllables[i] for i in rng.integers(0, len(syllables), size=int(rng.integers(1, 4))))
        out[word] = None
    return list(out)


def sample_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) token lengths drawn from :data:`LENGTH_HISTOGRAM` (uniform within a bin), capped at 64."""
    starts = np.array([s for s, _ in LENGTH_HISTOGRAM])
    weights = np.array([c for _, c in LENGTH_HISTOGRAM], dtype=np.float64)
    bins = rng.choice(len(starts), size=n, p=weights / weights.sum())
    return np.minimum(starts[bins] + rng.integers(0, BIN_WIDTH, size=n), MAX_LEN)


def sentences(lengths: np.ndarray, words: list[str], rng: np.random.Generator) -> list[str]:
    """One sentence per length: words (stem + optional particle) then '.', exactly ``length`` tokens."""
    out = []
    for length in lengths:
        left = int(length) - 3  # [CLS], '.', [SEP]
        words_out = []
        while left > 0:
            word = words[int(rng.integers(len(words)))]
            left -= 1
            if left > 0 and rng.random() < 0.5:
                word += SUFFIXES[int(rng.integers(len(SUFFIXES)))]
                left -= 1
            words_out.append(word)
        out.append(" ".join(words_out) + ".")
    return out


def build(folder: Path, config: dict, *, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Write a random-init BERT + tokenizer to ``folder``; return ``n`` synthetic sentences and their (n,) token lengths."""
    from transformers import BertConfig, BertModel

    from pipeline.modeling import quiet_transformers
    from pipeline.tiny import build_tokenizer

    quiet_transformers()
    rng = np.random.default_rng(seed)
    vocab_size = int(config["vocab_size"])
    n_stems = vocab_size - len(SPECIALS) - len(SUFFIXES) - 1
    if n_stems < 100:
        raise SystemExit(f"error: vocab_size {vocab_size} is too small; expected at least 130")
    words = stems(n_stems, rng)
    vocab = SPECIALS + ["."] + [f"##{s}" for s in SUFFIXES] + words
    tokenizer = build_tokenizer(vocab, SPECIALS)
    config = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "pad_token_id": 0, **config}
    torch.manual_seed(seed)
    BertModel(BertConfig(**config)).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    lengths = sample_lengths(n, rng)
    text = sentences(lengths, words, rng)
    got = [len(x) for x in tokenizer(text[:256])["input_ids"]]
    assert got == lengths[:256].tolist(), "synthetic sentences do not tokenize to their planned lengths"
    return text, lengths


# --- measurements (each in its own process) ----------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    """Start CUDA's peak-memory count here (CPU: nothing; each measurement is a fresh process)."""
    if device.type == "cuda":
        torch.empty(0, device=device)  # initialise the context and the caching allocator first
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _nonembedding_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.encoder.parameters())


class StepProfiler:
    """torch.profiler over training steps ``start + 1`` .. ``start + count``, driven by train_seed's log callback.

    :meth:`summary` says where that time went: on CUDA the kernels' busy time against
    their span (the rest is the GPU waiting for the host), by kernel kind; on CPU the
    operators' own time against the wall time.
    """

    #: kernel (or CPU operator) kind -> name pattern, first match wins: attention first, since the
    #: memory-efficient attention kernels are CUTLASS kernels too (fmha_cutlassF_...)
    KINDS = (("attention", r"fmha|flash|attention|attn"),
             ("matmul", r"gemm|xmma|cutlass|cublas|wgmma|nvjet|aten::(mm|addmm|bmm|matmul)$"),
             ("optimizer", r"adam|multi_tensor"), ("copy", r"memcpy|memset"))

    def __init__(self, device: torch.device, *, start: int, count: int):
        from torch.profiler import ProfilerActivity, profile

        self.device, self.start, self.count = device, start, count
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.prof = profile(activities=activities)
        self.wall = 0.0

    def at_step(self, step: int) -> None:
        """Call once per finished training step."""
        if step == self.start:
            _sync(self.device)
            self.prof.start()
            self.wall = time.perf_counter()
        elif step == self.start + self.count:
            _sync(self.device)
            self.wall = time.perf_counter() - self.wall
            self.prof.stop()

    def summary(self) -> dict:
        """{steps, wall_ms_per_step, busy_ms_per_step, span_ms_per_step, by_kind: {kind: ms/step}, top: [...]}."""
        import re
        from collections import Counter

        from torch.autograd import DeviceType

        per_step = 1e-3 / self.count  # us -> ms per step
        out = {"steps": self.count, "wall_ms_per_step": 1e3 * self.wall / self.count, "device": self.device.type}
        by_name: Counter[str] = Counter()
        if self.device.type == "cuda":
            kernels = sorted((e for e in self.prof.events() if e.device_type == DeviceType.CUDA
                              and not getattr(e, "is_user_annotation", False)
                              and not e.name.startswith("ProfilerStep")),
                             key=lambda e: e.time_range.start)
            busy, end = 0.0, -math.inf  # union of the kernels' intervals (us)
            for e in kernels:
                lo, hi = e.time_range.start, e.time_range.end
                busy += max(0.0, hi - max(lo, end))
                end = max(end, hi)
                by_name[e.name] += hi - lo
            span = (end - kernels[0].time_range.start) if kernels else 0.0
            out.update(busy_ms_per_step=busy * per_step, span_ms_per_step=span * per_step, kernels=len(kernels))
        else:
            for avg in self.prof.key_averages():
                by_name[avg.key] += avg.self_cpu_time_total
            out.update(busy_ms_per_step=sum(by_name.values()) * per_step, span_ms_per_step=out["wall_ms_per_step"])
        kinds: Counter[str] = Counter()
        for name, us in by_name.items():
            kind = next((k for k, pattern in self.KINDS if re.search(pattern, name, re.I)), "other")
            kinds[kind] += us * per_step
        out["by_kind"] = dict(kinds.most_common())
        out["top"] = [(name[:90], us * per_step) for name, us in by_name.most_common(8)]
        return out


def train_ours(folder: str, text: list[str], *, batch_size: int, steps: int, warmup: int, seed: int,
               device: str, compile: bool = False, precision: str = "bf16", deterministic: bool = False,
               profile_steps: int = 0) -> dict:
    """pipeline.train.train_seed on a token cache; time steps ``warmup``..``steps`` via its log callback.

    ``precision`` and ``deterministic`` are the params of the same names. With ``profile_steps``
    the steps after the warm-up run under :class:`StepProfiler` (its summary is returned as
    ``profile``; the timing of such a run includes the profiler's overhead).
    """
    from transformers import AutoTokenizer

    from pipeline.distributed import DistInfo
    from pipeline.modeling import quiet_transformers
    from pipeline.tokens import TokenColumn, tokenize_to_arrays, write_column
    from pipeline.train import DevSet, TrainSettings, batch_indices, epoch_order, train_seed

    quiet_transformers()
    dev_ = torch.device(device)
    _reset_peak(dev_)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
        tmp = Path(tmp)
        ids, offsets = tokenize_to_arrays(tokenizer, text, max_len=MAX_LEN, progress=False)
        write_column(tmp, "train", ids, offsets)
        column = TokenColumn(tmp, "train")
        dev_ids = column.rows(range(16))
        dev = DevSet(dev_ids[:8], dev_ids[8:], np.linspace(0.0, 5.0, 8))  # scored once, after the timed window
        settings = TrainSettings(epochs=1, batch_size=batch_size, lr=LR, dropout=0.1, temp=TEMP, pooler="cls",
                                 recipe="card", eval_steps=10**9, weight_decay=WEIGHT_DECAY,
                                 hard_negative_weight=0.0, max_len=MAX_LEN, precision=precision,
                                 checkpoint_steps=10**9, log_steps=LOG_STEPS, compile=compile,
                                 deterministic=deterministic)
        stamps: dict[int, float] = {}
        profiler = StepProfiler(dev_, start=warmup, count=profile_steps) if profile_steps else None

        def log(step: int, values: dict) -> None:
            if "train/loss" in values:  # the loss was just read back: device work of this step is done
                stamps[step] = time.perf_counter()
            if profiler is not None and "train/lr" in values:  # once per training step
                profiler.at_step(step)

        train_seed(settings, seed=seed, model_dir=Path(folder), columns=[column], dev=dev, out_dir=tmp / "out",
                   state_path=tmp / "state.pt", fingerprint_value="bench", device=dev_, log=log, progress=False)
        order = epoch_order(len(column), seed, 0)  # the batches train_seed drew
        lengths = column.lengths()
        timed = np.concatenate([batch_indices(order, s, batch_size, DistInfo()) for s in range(warmup, steps)])
        tokens = 2 * int(lengths[timed].sum())  # two views per sentence
    marks = sorted(step for step in stamps if warmup <= step <= steps)  # every LOG_STEPS steps
    window_step_ms = [1e3 * (stamps[b] - stamps[a]) / (b - a) for a, b in zip(marks, marks[1:])]
    result = {"seconds": stamps[steps] - stamps[warmup], "sentences": len(timed), "tokens": tokens,
              "peak_mib": _peak_mib(dev_), "window_step_ms": window_step_ms}
    if profiler is not None:
        result["profile"] = profiler.summary()
    return result


def train_reference(folder: str, text: list[str], *, batch_size: int, steps: int, warmup: int, seed: int,
                    device: str) -> dict:
    """The card code's loop (see module docstring), over the same batches as train_ours."""
    from torch import nn
    from transformers import AutoModel, AutoTokenizer

    from pipeline.modeling import quiet_transformers
    from pipeline.train import NO_DECAY, epoch_order

    quiet_transformers()
    dev_ = torch.device(device)
    _reset_peak(dev_)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).to(dev_).train()

    def collate(batch: list[str]) -> dict[str, torch.Tensor]:
        enc = tokenizer([s for s in batch for _ in range(2)], padding="max_length", max_length=MAX_LEN,
                        truncation=True, return_tensors="pt")
        return {k: v.view(len(batch), 2, MAX_LEN) for k, v in enc.items()}  # (B, 2, 64)

    loader = torch.utils.data.DataLoader(text, batch_size=batch_size, collate_fn=collate,
                                         sampler=epoch_order(len(text), seed, 0).tolist())
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(nd in n for nd in NO_DECAY)],
         "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in model.named_parameters() if any(nd in n for nd in NO_DECAY)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=LR, eps=1e-8, foreach=False)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=1)  # stepped per batch, as the card
    use_amp = dev_.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    cos = nn.CosineSimilarity(dim=-1)
    loss_fn = nn.CrossEntropyLoss()
    start = None
    tokens = sentences_done = 0
    for step, batch in enumerate(loader, start=1):
        bsz = batch["input_ids"].shape[0]
        flat = {k: v.view(-1, MAX_LEN).to(dev_) for k, v in batch.items()}  # (2B, 64)
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            cls = model(**flat).last_hidden_state[:, 0].view(bsz, 2, -1)  # (B, 2, H)
            z1, z2 = cls[:, 0], cls[:, 1]
            sim = cos(z1.unsqueeze(1), z2.unsqueeze(0)) / TEMP  # (B, B)
            loss = loss_fn(sim, torch.arange(bsz, device=dev_))
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss.item()  # the card logged every step
        if step == warmup:
            start = time.perf_counter()
        elif step > warmup:
            tokens += int(batch["attention_mask"].sum())
            sentences_done += bsz
        if step == steps:
            break
    return {"seconds": time.perf_counter() - start, "sentences": sentences_done, "tokens": tokens,
            "peak_mib": _peak_mib(dev_)}


def encode_ours(folder: str, text: list[str], *, batch_size: int, repeats: int, device: str) -> dict:
    """pipeline.modeling.encode (tokenize distinct sentences, then encode_ids); median of ``repeats`` after a warm-up."""
    from pipeline.modeling import encode, load_encoder, quiet_transformers, tokenize_ids

    quiet_transformers()
    dev_ = torch.device(device)
    encoder, tokenizer = load_encoder(folder, device=dev_)
    _reset_peak(dev_)

    def run() -> float:
        _sync(dev_)
        t0 = time.perf_counter()
        encode(encoder, tokenizer, text, max_len=MAX_LEN, batch_size=batch_size, device=dev_)
        return time.perf_counter() - t0  # encode copies the embeddings to the host: synchronous

    run()
    seconds = statistics.median(run() for _ in range(repeats))
    tokens = sum(len(x) for x in tokenize_ids(tokenizer, text, MAX_LEN))
    return {"seconds": seconds, "sentences": len(text), "tokens": tokens,
            "peak_mib": _peak_mib(dev_), "params": _nonembedding_params(encoder.backbone)}


def encode_reference(folder: str, text: list[str], *, batch_size: int, repeats: int, device: str) -> dict:
    """Input order, tokenized per batch with padding to 64, no_grad, [CLS]."""
    from transformers import AutoModel, AutoTokenizer

    from pipeline.modeling import quiet_transformers

    quiet_transformers()
    dev_ = torch.device(device)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).to(dev_).eval()
    _reset_peak(dev_)
    tokens = 0

    def run() -> float:
        nonlocal tokens
        tokens = 0
        _sync(dev_)
        t0 = time.perf_counter()
        with torch.no_grad():
            for start in range(0, len(text), batch_size):
                enc = tokenizer(text[start:start + batch_size], padding="max_length", max_length=MAX_LEN,
                                truncation=True, return_tensors="pt")
                tokens += int(enc["attention_mask"].sum())
                model(**{k: v.to(dev_) for k, v in enc.items()}).last_hidden_state[:, 0].cpu()
        return time.perf_counter() - t0

    run()
    seconds = statistics.median(run() for _ in range(repeats))
    return {"seconds": seconds, "sentences": len(text), "tokens": tokens, "peak_mib": _peak_mib(dev_)}


def _init_worker(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)


def in_fresh_process(fn, *args, threads: int | None = None, **kwargs) -> dict:
    """Run ``fn`` in a new spawned process (clean peak memory, clean allocator) and return its result."""
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_init_worker,
                                                initargs=(threads,)) as pool:
        return pool.submit(fn, *args, **kwargs).result()


# --- report ------------------------------------------------------------------------

def hardware(device: torch.device) -> str:
    cpu = cpu_model()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu}, {usable} usable of {os.cpu_count()} cores; torch {torch.__version__}, " \
           f"torch threads {torch.get_num_threads()}; device {device.type}"
    if device.type == "cuda":
        text += f" ({torch.cuda.get_device_name(device)})"
    return text


def peak_flops(device: torch.device, override: float | None) -> float | None:
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for fragment, value in PEAK_BF16 if fragment in name), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/train_throughput.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="model shape (ignored with --config)")
    parser.add_argument("--config", type=Path, help="JSON of BertConfig keyword arguments (needs vocab_size)")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch (sentences; 2 views each)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per loop, warm-up included")
    parser.add_argument("--warmup", type=int, default=LOG_STEPS,
                        help=f"untimed first steps; a multiple of {LOG_STEPS} (ours is timed at loss read-backs)")
    parser.add_argument("--encode-batch-size", type=int, default=256, help="the card's evaluation batch")
    parser.add_argument("--encode-sentences", type=int, help="sentences to encode (default: batch-size x steps)")
    parser.add_argument("--repeats", type=int, default=3, help="timed encoding runs; the median is reported")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu or cuda[:N] (default: cuda when available)")
    parser.add_argument("--peak-flops", type=float, help="dense bf16 peak FLOP/s for MFU (default: by GPU name)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=42, help="model init, sentences and batch order")
    parser.add_argument("--compile", action="store_true",
                        help="also time ours with torch.compile (params `compile: true`); compile time is in the "
                             "untimed warm-up steps")
    parser.add_argument("--out", type=Path, help="markdown report (default: reports/bench/train_throughput.<name>.<device>.md)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)  # also what the report header reads
    if args.warmup % LOG_STEPS or not 0 < args.warmup < args.steps:
        parser.error(f"--warmup must be a positive multiple of {LOG_STEPS} below --steps")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device visible to torch")
    if args.config is not None:
        try:
            config = json.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            parser.error(f"--config {args.config}: {exc}")
        if not isinstance(config, dict) or "vocab_size" not in config:
            parser.error(f"--config {args.config}: expected a JSON object of BertConfig arguments with vocab_size")
        name = args.config.stem
    else:
        config, name = dict(PRESETS[args.preset]), args.preset
    out = args.out or Path(f"reports/bench/train_throughput.{name}.{device.type}.md")

    load_before = os.getloadavg()
    n_train = args.batch_size * args.steps  # one epoch of exactly --steps batches
    n_encode = args.encode_sentences or n_train
    with tempfile.TemporaryDirectory(prefix="bench-model-") as folder:
        text, lengths = build(Path(folder), config, n=max(n_train, n_encode), seed=args.seed)
        train_kw = dict(batch_size=args.batch_size, steps=args.steps, warmup=args.warmup, seed=args.seed,
                        device=str(device))
        enc_kw = dict(batch_size=args.encode_batch_size, repeats=args.repeats, device=str(device))
        results = {}
        jobs = [("train", train_ours, train_kw, text[:n_train]),
                ("train-ref", train_reference, train_kw, text[:n_train]),
                ("encode", encode_ours, enc_kw, text[:n_encode]),
                ("encode-ref", encode_reference, enc_kw, text[:n_encode])]
        if args.compile:
            jobs.insert(1, ("train-compile", train_ours, {**train_kw, "compile": True}, text[:n_train]))
        for label, fn, kw, sents in jobs:
            print(f"{name}: measuring {label} ...", file=sys.stderr, flush=True)
            results[label] = in_fresh_process(fn, folder, sents, threads=args.threads, **kw)

    params = results["encode"]["params"]
    peak = peak_flops(device, args.peak_flops)
    rows = []
    measured = [("training", "ours", "train", 6), ("training", "reference", "train-ref", 6),
                ("encoding", "ours", "encode", 2), ("encoding", "reference", "encode-ref", 2)]
    if args.compile:
        measured.insert(1, ("training", "ours + torch.compile", "train-compile", 6))
    for task, loop, key, factor in measured:
        r = results[key]
        sps, tps = r["sentences"] / r["seconds"], r["tokens"] / r["seconds"]
        mfu = f"{100 * factor * params * tps / peak:.1f}%" if peak else "n/a"
        rows.append(f"| {task} | {loop} | {sps:,.0f} | {tps:,.0f} | {r['peak_mib']:,.0f} | {mfu} |")
    ratio_train = (results["train"]["sentences"] / results["train"]["seconds"]) / \
        (results["train-ref"]["sentences"] / results["train-ref"]["seconds"])
    ratio_enc = (results["encode"]["sentences"] / results["encode"]["seconds"]) / \
        (results["encode-ref"]["sentences"] / results["encode-ref"]["seconds"])
    mem = "peak allocated MiB" if device.type == "cuda" else "peak RSS MiB"
    table = [f"| task | loop | sentences/s | tokens/s | {mem} | MFU |", "|---|---|---:|---:|---:|---:|", *rows, "",
             f"ours / reference sentences/s: training {ratio_train:.2f}x, encoding {ratio_enc:.2f}x"]
    print("\n".join(table))

    command = "python bench/train_throughput.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    timed = results["train"]["sentences"]
    report = [
        f"# Training and encoding throughput: {name} on {device.type}",
        "",
        f"- hardware: {hardware(device)}",
        f"- code: {describe_code(code_version())}",
        f"- 1-minute load average (other processes share the machine): {load_before[0]:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after",
        f"- model: random-init BERT `{json.dumps(config, sort_keys=True)}`, "
        f"{params / 1e6:.2f}M non-embedding parameters",
        f"- training: batch {args.batch_size}, {args.steps} steps, the first {args.warmup} untimed "
        f"({timed} sentences timed); encoding: {n_encode} sentences, batch {args.encode_batch_size}, "
        f"median of {args.repeats} after a warm-up",
        f"- sentences: synthetic, token lengths from the recorded Korean-Wikipedia histogram "
        f"(training set: mean {lengths[:n_train].mean():.1f} tokens, max {lengths[:n_train].max()}), "
        f"max length {MAX_LEN}",
        f"- command: `{command}`",
        f"- peak FLOP/s for MFU: {peak:.3g}" if peak else "- MFU: n/a (not on a GPU with a known peak)",
        "",
        *table,
        "",
        "tokens/s counts real (non-pad) tokens through the encoder; in training both dropout views count. "
        "MFU counts the same useful tokens, so compute spent on padding lowers it. "
        "Each row ran in a fresh process; CPU peak RSS includes the imported torch and transformers. "
        "On a shared CPU, `--threads 1` avoids OpenMP threads spinning at barriers while another process holds "
        "a core, which made 2-thread timings swing by up to 10x here.",
        "",
    ]
    from pipeline.atomic import write_text

    write_text(out, "\n".join(report))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
