"""The card's eight columns, their AVG, and paired bootstrap intervals.

Columns: {cosine, euclidean, manhattan, dot} similarity x {Pearson, Spearman}
against the gold scores over the whole set, x100 as the card reports them.
Euclidean and manhattan scores are negated paired distances (larger = more
similar), dot is the plain dot product, AVG is the mean of the eight.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy import stats

SIMILARITIES = ("cosine", "euclidean", "manhattan", "dot")
COLUMNS = tuple(f"{sim}_{corr}" for sim in SIMILARITIES for corr in ("pearson", "spearman"))
#: Metric keys in the card's column order: AVG first, then the eight columns.
KEYS = ("avg",) + COLUMNS


def pair_scores(emb1: np.ndarray, emb2: np.ndarray) -> dict[str, np.ndarray]:
    """The four paired similarity scores of two (N, H) embedding arrays, in float64.

    Returns:
        {similarity: (N,) scores}; larger means more similar for all four.
    """
    a = np.asarray(emb1, dtype=np.float64)
    b = np.asarray(emb2, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    return {
        "cosine": dot / np.where(norms == 0, 1.0, norms),
        "euclidean": -np.linalg.norm(a - b, axis=1),
        "manhattan": -np.abs(a - b).sum(axis=1),
        "dot": dot,
    }


def correlations(gold: np.ndarray, scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Pearson and Spearman of each similarity against ``gold`` (scipy), x100, plus AVG.

    Args:
        gold: (N,) gold similarity scores.
        scores: {similarity: (N,)} from :func:`pair_scores`.

    Returns:
        {"avg": ..., "cosine_pearson": ..., ...} as Python floats.
    """
    out: dict[str, float] = {}
    for sim in SIMILARITIES:
        out[f"{sim}_pearson"] = float(stats.pearsonr(gold, scores[sim]).statistic) * 100
        out[f"{sim}_spearman"] = float(stats.spearmanr(gold, scores[sim]).statistic) * 100
    out["avg"] = float(np.mean([out[c] for c in COLUMNS]))
    return {k: out[k] for k in KEYS}


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of two (R, N) arrays."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis=1) / denom


def resampled_metrics(gold: np.ndarray, scores: Sequence[Mapping[str, np.ndarray]], idx: np.ndarray) -> np.ndarray:
    """Metrics on resampled pairs, averaged over models (e.g. seeds).

    Args:
        gold: (N,) gold scores.
        scores: one {similarity: (N,)} mapping per model; the statistic is the
            mean of the models' metric (the mean over seeds).
        idx: (R, N) resampling indices.

    Returns:
        (R, 9) array in :data:`KEYS` order, x100.
    """
    g = gold[idx]
    g_rank = stats.rankdata(g, axis=1)
    out = np.zeros((idx.shape[0], len(KEYS)))
    for model_scores in scores:
        cols = []
        for sim in SIMILARITIES:
            s = np.asarray(model_scores[sim])[idx]
            cols.append(_rowwise_pearson(g, s))
            cols.append(_rowwise_pearson(g_rank, stats.rankdata(s, axis=1)))
        cols = np.stack(cols, axis=1) * 100  # (R, 8)
        out[:, 1:] += cols
        out[:, 0] += cols.mean(axis=1)
    return out / len(scores)


def bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """(R, N) indices of a paired bootstrap: R resamples of the N pairs, with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    lo, hi = np.nanpercentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def bootstrap_intervals(
    gold: np.ndarray,
    scores: Sequence[Mapping[str, np.ndarray]],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    baseline: Sequence[Mapping[str, np.ndarray]] | None = None,
    chunk: int = 250,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of a paired bootstrap over the pairs.

    Each resample draws N pairs with replacement and recomputes every column
    (the mean over ``scores``' models). With ``baseline`` it is the interval of
    the *difference* (scores - baseline) on the same resampled pairs.

    Returns:
        {key: (low, high)} for every key in :data:`KEYS`, x100.
    """
    gold = np.asarray(gold, dtype=np.float64)
    idx = bootstrap_indices(len(gold), resamples, seed)
    parts = []
    for start in range(0, resamples, chunk):
        block = idx[start:start + chunk]
        values = resampled_metrics(gold, scores, block)
        if baseline is not None:
            values = values - resampled_metrics(gold, baseline, block)
        parts.append(values)
    values = np.concatenate(parts)
    return {key: _interval(values[:, k], confidence) for k, key in enumerate(KEYS)}


def mean_over(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Column-wise mean of several runs' metrics (e.g. seeds)."""
    return {k: float(np.mean([r[k] for r in runs])) for k in KEYS}


def std_over(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Column-wise sample standard deviation (ddof=1) of several runs' metrics."""
    return {k: float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0 for k in KEYS}
