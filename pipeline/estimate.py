"""What a run will cost before it starts: disk it writes and wall time per stage.

Disk comes from the model sizes (the hub's listing, or parameters x 4 bytes from
config.json) and the source sizes; wall time from the training and encoding
throughput measured by ``bench/train_throughput.py`` and committed under
``reports/bench/``, scaled to the target model by its non-embedding parameters
(the matrix-multiply work per token grows with them; attention's T^2 term is
small at T <= 64). Both are estimates, printed with the numbers they use.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

#: Training examples when no data/train manifest exists yet: the card's 1M wiki sentences
#: and the 277,811 KorNLI triplets of `triplets.recipe: card`.
CARD_EXAMPLES = {"wiki": 1_000_000, "nli": 277_811}
#: Forward passes per example relative to the bench's unsupervised "sentence" (encoded twice,
#: one per dropout view): a triplet encodes anchor, positive and negative once each.
PASSES = {"wiki": 1.0, "nli": 1.5}
#: Pairs in KorSTS dev (scored every `eval_steps`) and in the two test benchmarks.
DEV_PAIRS = 1_500
TEST_PAIRS = 1_379 + 519
#: Mean tokens of a training sentence (the bench's Korean-Wikipedia length histogram).
MEAN_TOKENS = 27


@dataclass(frozen=True)
class ModelSize:
    """A model's weights on disk (bytes, fp32 as the pipeline stores them) and its non-embedding parameters."""

    bytes: int
    nonembedding: int


def param_counts(config: Mapping) -> tuple[int, int]:
    """(all, non-embedding) parameters of a BERT/RoBERTa encoder from its ``config.json``.

    Non-embedding = the transformer layers (attention, feed-forward, LayerNorms), as
    ``bench/train_throughput.py`` counts them; all adds the embeddings and the pooler.
    """
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_layer = 4 * (h * h + h) + (h * inter + inter) + (inter * h + h) + 2 * (2 * h)
    embeddings = (config["vocab_size"] + config.get("max_position_embeddings", 512)
                  + config.get("type_vocab_size", 2) + 2) * h
    return layers * per_layer + embeddings + h * h + h, layers * per_layer


@dataclass(frozen=True)
class Throughput:
    """One committed training-throughput measurement (``reports/bench/train_throughput.*.md``)."""

    file: str
    device: str
    hardware: str
    nonembedding: int
    train: float  # sentences/s, the pipeline's own loop
    encode: float | None  # sentences/s, the pipeline's own encoding


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def read_bench(folder: Path | str) -> list[Throughput]:
    """Every training-throughput report under ``folder`` that has the pipeline's training row."""
    out = []
    for path in sorted(Path(folder).glob("train_throughput.*.md")):
        text = path.read_text(encoding="utf-8")
        hardware = re.search(r"^- hardware: (.+)$", text, re.M)
        device = re.search(r"\bdevice (\w+)", hardware.group(1)) if hardware else None
        params = re.search(r"([\d.]+)M non-embedding parameters", text)
        train = re.search(r"^\| training \| ours \| ([\d,.]+) \|", text, re.M)
        encode = re.search(r"^\| encoding \| ours \| ([\d,.]+) \|", text, re.M)
        if not (hardware and device and params and train):
            continue
        out.append(Throughput(file=path.as_posix(), device=device.group(1), hardware=hardware.group(1),
                              nonembedding=round(float(params.group(1)) * 1e6), train=_number(train.group(1)),
                              encode=_number(encode.group(1)) if encode else None))
    return out


def pick_throughput(measured: Sequence[Throughput], device: str, nonembedding: int) -> Throughput | None:
    """The measurement on ``device`` whose model is closest in size to the target; else the closest on
    any device (the caller says so); None when nothing was measured."""
    same = [t for t in measured if t.device == device] or list(measured)
    if not same:
        return None
    return min(same, key=lambda t: abs(math.log(t.nonembedding / nonembedding)))


def scaled(rate: float, measured: Throughput, nonembedding: int) -> float:
    """``rate`` (sentences/s measured on the bench model) for a model with ``nonembedding`` parameters."""
    return rate * measured.nonembedding / nonembedding


def train_seconds(*, examples: int, kind: str, epochs: int, seeds: int, batch_size: int, eval_steps: int,
                  nonembedding: int, measured: Throughput, processes: int = 1) -> float:
    """Wall time of one train stage: the training steps plus the KorSTS dev scoring every ``eval_steps``.

    ``processes`` GPUs are assumed to scale ideally (the batch is split across them).
    """
    train_rate = scaled(measured.train, measured, nonembedding) * processes
    seconds = examples * PASSES[kind] * epochs / train_rate
    if measured.encode:
        evals = math.ceil(examples / batch_size) * epochs // eval_steps + 1
        seconds += evals * 2 * DEV_PAIRS / scaled(measured.encode, measured, nonembedding)
    return seconds * seeds


def eval_seconds(nonembedding: int, measured: Throughput) -> float | None:
    """Wall time of scoring one model on both benchmarks under both protocols (each sentence once)."""
    if not measured.encode:
        return None
    return 2 * 2 * TEST_PAIRS / scaled(measured.encode, measured, nonembedding)


def token_cache_bytes(examples: int, kind: str) -> int:
    """int32 ids at :data:`MEAN_TOKENS` per sentence plus an int64 offset, per column (1 wiki, 3 nli)."""
    columns = 1 if kind == "wiki" else 3
    return examples * columns * (MEAN_TOKENS * 4 + 8)


def disk_needed(*, base: Mapping[str, ModelSize], hub_models: Sequence[str], variant_models: Mapping[str, str],
                variant_examples: Mapping[str, tuple[str, int]], seeds: int, sources: Mapping[str, int | None],
                published: Sequence[ModelSize]) -> dict[str, int]:
    """Bytes a full run writes, by part. Every DVC output also lands in the DVC cache (x2).

    Args:
        base: size of each distinct base model.
        hub_models: which of them come from the hub (one more copy in the HF cache).
        variant_models: variant -> its base model.
        variant_examples: variant -> (data kind, training examples).
        seeds: training runs per variant.
        sources: source key -> bytes (None when the server does not say).
        published: sizes of the hub checkpoints evaluated as they are, published and compared (stored once,
            in the HF cache; see :func:`pipeline.hubeval.evaluate_checkpoint`).
    """
    size = {v: base[m].bytes for v, m in variant_models.items()}
    parts = {
        "base models": sum(s.bytes for s in base.values()) * 2 + sum(base[m].bytes for m in hub_models),
        "trained models": sum(size.values()) * seeds * 2,
        "packages (dist/)": sum(size.values()) * 2,
        # one variant trains at a time: its finished seeds plus the live state (weights + AdamW's two moments)
        "checkpoints": max((seeds + 3) * s for s in size.values()) if size else 0,
        # data/raw, and data/train's text (a subset of it, so at most as large again), each x2
        "raw data and training text": sum(s or 0 for s in sources.values()) * 2 * 2,
        "token caches": sum(token_cache_bytes(n, kind) for kind, n in variant_examples.values()) * 2,
    }
    if published:
        # the HF cache only: the published and compare stages evaluate links into it, not copies
        parts["hub checkpoints"] = sum(p.bytes for p in published)
    return parts


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    """Seconds as '42 s', '12 min' or '3.4 h'."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
