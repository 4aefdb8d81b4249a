"""The report's figures: PNGs drawn with matplotlib (no network, fixed style, fixed metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from pipeline.card import COLUMN_TITLES
from pipeline.metrics import KEYS

STYLE = {
    "figure.dpi": 100, "savefig.dpi": 100, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
    "legend.fontsize": 9, "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.grid": True, "grid.alpha": 0.3,
    "font.family": "DejaVu Sans", "svg.hashsalt": "simcse-ko", "legend.framealpha": 0.9,
}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # no software/version/date metadata: the same figure gives the same bytes
    fig.savefig(path, metadata={"Software": None}, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def training_curves(path: Path, title: str, runs: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]]) -> Path:
    """Loss (top) and learning rate (bottom) per step, one line per seed.

    Args:
        runs: {seed label: {"loss": [(step, value)], "lr": [(step, value)]}}.
    """
    plt = _plt()
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for i, (label, series) in enumerate(runs.items()):
        color = COLORS[i % len(COLORS)]
        if series.get("loss"):
            steps, values = zip(*series["loss"])
            ax_loss.plot(steps, values, color=color, lw=1.2, label=label)
        if series.get("lr"):
            steps, values = zip(*series["lr"])
            ax_lr.plot(steps, values, color=color, lw=0.8, marker=".", ms=2, label=label)
    ax_loss.set_ylabel("contrastive loss (nats)")
    ax_loss.set_title(title)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("training step")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in (ax_loss, ax_lr):
        ax.legend(loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def dev_curve(path: Path, title: str, runs: Mapping[str, Sequence[Mapping[str, float]]],
              selected: Mapping[str, int], metric: str) -> Path:
    """KorSTS dev cosine Pearson / Spearman per evaluation, the selected step marked.

    Args:
        runs: {seed label: [{"step", "cosine_pearson", "cosine_spearman"}, ...]}.
        selected: {seed label: selected step}.
        metric: the selection metric (``cosine_pearson`` or ``cosine_spearman``).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, (label, history) in enumerate(runs.items()):
        color = COLORS[i % len(COLORS)]
        steps = [h["step"] for h in history]
        ax.plot(steps, [h["cosine_pearson"] for h in history], color=color, marker="o", ms=3, lw=1.2,
                label=f"{label} cosine Pearson")
        ax.plot(steps, [h["cosine_spearman"] for h in history], color=color, marker="s", ms=3, lw=1.2,
                ls="--", label=f"{label} cosine Spearman")
        best = selected[label]
        best_value = next(h[metric] for h in history if h["step"] == best)
        ax.plot([best], [best_value], marker="*", ms=14, color=color, ls="none",
                label=f"{label} selected (step {best})")
    ax.set_xlabel("training step")
    ax.set_ylabel("KorSTS dev correlation (x100)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def scatter(path: Path, title: str, panels: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Gold score vs predicted cosine similarity, one panel per benchmark.

    Args:
        panels: {benchmark title: (gold (N,), cosine (N,))}.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, (name, (gold, cos)) in zip(axes[0], panels.items()):
        ax.scatter(gold, cos, s=8, alpha=0.5, color=COLORS[0], edgecolors="none")
        if len(gold) > 1 and np.std(gold) > 0:
            slope, intercept = np.polyfit(gold, cos, 1)
            xs = np.array([gold.min(), gold.max()])
            ax.plot(xs, slope * xs + intercept, color=COLORS[3], lw=1.2, label="least-squares fit")
            ax.legend(loc="lower right")
        ax.set_xlabel("gold similarity (0-5)")
        ax.set_ylabel("predicted cosine similarity")
        ax.set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def bars(path: Path, title: str, panels: Mapping[str, tuple[Mapping[str, float], Mapping[str, float] | None,
                                                             Mapping[str, tuple[float, float]] | None]]) -> Path:
    """AVG and the eight columns as grouped bars, ours vs the card, one panel per benchmark.

    Args:
        panels: {benchmark title: (ours {key: value}, card {key: value} or None, ours' intervals or None)}.
    """
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    x = np.arange(len(KEYS))
    width = 0.38
    for ax, (name, (ours, card, ci)) in zip(axes[:, 0], panels.items()):
        values = [ours[k] for k in KEYS]
        err = None
        if ci:
            err = np.array([[ours[k] - ci[k][0] for k in KEYS], [ci[k][1] - ours[k] for k in KEYS]])
            err = np.clip(err, 0, None)
        ax.bar(x - width / 2, values, width, yerr=err, capsize=2, color=COLORS[0], label="ours (95% CI)")
        if card:
            ax.bar(x + width / 2, [card[k] for k in KEYS], width, color=COLORS[1], label="card")
        ax.set_xticks(x)
        ax.set_xticklabels([t.replace(" ", "\n") for t in COLUMN_TITLES])
        ax.set_ylabel("correlation (x100)")
        ax.set_title(name)
        low = min(values + ([card[k] for k in KEYS] if card else []))
        ax.set_ylim(min(0.0, low - 5), 100)
        ax.legend(loc="upper right", ncols=2)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def sweep(path: Path, param: str, panels: Mapping[str, Mapping[str, Sequence[tuple[float, float, float, float]]]]
          ) -> Path:
    """A swept param vs AVG, one panel per benchmark, one line per variant, 95% intervals as bars.

    Args:
        panels: {benchmark title: {variant: [(param value, avg, ci low, ci high), ...]}}.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (name, lines) in zip(axes[0], panels.items()):
        for i, (variant, points) in enumerate(lines.items()):
            pts = sorted(points)
            x = np.array([p[0] for p in pts])
            y = np.array([p[1] for p in pts])
            err = np.clip(np.array([[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]), 0, None)
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=COLORS[i % len(COLORS)], label=variant)
        ax.set_xlabel(param)
        ax.set_ylabel("AVG (x100)")
        ax.set_title(name)
        ax.legend(loc="best")
    fig.tight_layout()
    return _save(fig, path)


def ranked_avgs(path: Path, title: str, panels: Mapping[str, Sequence[tuple[str, str, float, float, float]]],
                groups: Sequence[str]) -> Path:
    """AVG with its 95% interval per model as horizontal bars, one panel per benchmark, same model order.

    Args:
        panels: {benchmark title: [(model label, group, avg, ci low, ci high), ...]} in display order (top first).
        groups: the group names in legend order (each gets one colour).
    """
    plt = _plt()
    rows = max((len(v) for v in panels.values()), default=1)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 0.9 + 0.42 * rows), squeeze=False,
                             sharey=True)
    color = {g: COLORS[i % len(COLORS)] for i, g in enumerate(groups)}
    for ax, (name, entries) in zip(axes[0], panels.items()):
        y = np.arange(len(entries))[::-1]
        avgs = np.array([e[2] for e in entries])
        err = np.clip(np.array([[e[2] - e[3] for e in entries], [e[4] - e[2] for e in entries]]), 0, None)
        ax.barh(y, avgs, xerr=err, capsize=2, color=[color[e[1]] for e in entries], height=0.7)
        ax.set_yticks(y)
        ax.set_yticklabels([e[0] for e in entries])
        ax.set_xlabel("AVG of the eight columns (x100), 95% interval")
        ax.set_xlim(min(0.0, float(avgs.min(initial=0)) - 5), 100)
        ax.set_title(name)
    handles = [plt.Rectangle((0, 0), 1, 1, color=color[g]) for g in groups]
    fig.legend(handles, list(groups), loc="lower center", ncols=len(groups), bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path)
