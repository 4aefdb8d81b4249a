"""The report's figures: PNGs drawn with matplotlib (no network, fixed style, fixed metadata)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


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
    alternating = False
    for i, (label, series) in enumerate(runs.items()):
        color = COLORS[i % len(COLORS)]
        if series.get("loss"):
            steps, values = zip(*series["loss"])
            ax_loss.plot(steps, values, color=color, lw=1.2, label=label)
        if series.get("lr"):
            steps, values = zip(*series["lr"])
            if oscillates(values):  # a connecting line would fill the panel solid
                ax_lr.plot(steps, values, color=color, ls="none", marker=".", ms=4, label=label)
                alternating = True
            else:
                ax_lr.plot(steps, values, color=color, lw=0.8, marker=".", ms=2, label=label)
    if alternating:
        ax_lr.set_title("the learning rate changes direction every step or two (the card's per-batch "
                        "CosineAnnealingLR): one dot per step, no line", fontsize=9)
    ax_loss.set_ylabel("contrastive loss (nats)")
    ax_loss.set_title(title)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("training step")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in (ax_loss, ax_lr):
        ax.legend(loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def oscillates(values: Sequence[float]) -> bool:
    """True if a learning-rate series turns (falls then rises, or back) on at least a quarter of its
    steps: the card's per-batch ``CosineAnnealingLR(T_max=epochs)`` gives lr, 0, lr, 0 (lr, lr/2, 0, lr/2
    with two epochs), which a connecting line turns into a solid block."""
    diffs = [b - a for a, b in zip(values, values[1:]) if b != a]
    turns = sum(1 for a, b in zip(diffs, diffs[1:]) if (a > 0) != (b > 0))
    return len(values) >= 8 and turns >= len(values) / 4


def dev_curve(path: Path, title: str, runs: Mapping[str, tuple[Mapping | None, Sequence[Mapping[str, float]],
                                                                Mapping | None]], metric: str) -> Path:
    """KorSTS dev cosine Pearson / Spearman per evaluation: step 0 (untrained) hollow, the selected step starred.

    Args:
        runs: {seed label: (the step-0 evaluation or None, the evaluations during training, the selected
            one or None)}, each evaluation {"step", "cosine_pearson", "cosine_spearman"}
            (see :func:`pipeline.report.dev_points`).
        metric: the selection metric (``cosine_pearson`` or ``cosine_spearman``).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    values = []
    for i, (label, (untrained, during, selected)) in enumerate(runs.items()):
        color = COLORS[i % len(COLORS)]
        history = ([untrained] if untrained else []) + list(during)
        steps = [h["step"] for h in history]
        for key, marker, ls in (("cosine_pearson", "o", "-"), ("cosine_spearman", "s", "--")):
            ys = [h[key] for h in history]
            values += ys
            ax.plot(steps, ys, color=color, marker=marker, ms=3, lw=1.2, ls=ls,
                    label=f"{label} {key.replace('_', ' ')}")
            if untrained:
                ax.plot([0], [untrained[key]], marker=marker, ms=8, mfc="white", color=color, ls="none")
        if selected:
            ax.plot([selected["step"]], [selected[metric]], marker="*", ms=14, color=color, ls="none",
                    label=f"{label} selected (step {selected['step']})")
    if any(u for u, _, _ in runs.values()):
        ax.plot([], [], marker="o", mfc="white", color="gray", ls="none", label="step 0: untrained (never selected)")
    # at least 20 points of range: a 2-point change must not look like a cliff
    low, high = min(values), max(values)
    pad = max(0.0, 20 - (high - low)) / 2 + 2
    ax.set_ylim(max(-100.0, low - pad), min(100.0, high + pad))
    ax.set_xlim(left=0 if any(u for u, _, _ in runs.values()) else None)
    ax.set_xlabel("training step")
    ax.set_ylabel("KorSTS dev correlation (x100)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def scatter(path: Path, title: str, panels: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Gold score vs predicted cosine similarity, one panel per benchmark.

    Args:
        panels: {benchmark title: (gold (N,), cosine (N,))}.
    """
    from scipy.stats import pearsonr, spearmanr

    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, (name, (gold, cos)) in zip(axes[0], panels.items()):
        ax.scatter(gold, cos, s=8, alpha=0.5, color=COLORS[0], edgecolors="none")
        if len(gold) > 2 and np.std(gold) > 0 and np.std(cos) > 0:
            r, rho = pearsonr(gold, cos)[0], spearmanr(gold, cos)[0]
            ax.text(0.03, 0.97, f"r = {100 * r:.2f}\nρ = {100 * rho:.2f} (x100)", transform=ax.transAxes,
                    va="top", ha="left", fontsize=9, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
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


def intervals(path: Path, title: str,
              panels: Mapping[str, Mapping[str, Sequence[tuple[str, float, float, float]]]]) -> Path:
    """Dot-and-interval plot: per benchmark panel and metric row, points in order (untrained → trained →
    card), each with its 95% interval (a point without one has low = high = value).

    Args:
        panels: {benchmark title: {metric title: [(point name, value, ci low, ci high), ...]}}.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 3.2), squeeze=False, sharey=True)
    names = list(dict.fromkeys(p[0] for rows in panels.values() for pts in rows.values() for p in pts))
    color = {n: COLORS[i % len(COLORS)] for i, n in enumerate(names)}
    for ax, (bench, rows) in zip(axes[0], panels.items()):
        for y, (metric, points) in enumerate(reversed(list(rows.items()))):
            xs = [p[1] for p in points]
            ax.plot(xs, [y] * len(xs), color="lightgray", lw=1.5, zorder=1)  # the untrained → trained → card path
            for k, (name, value, low, high) in enumerate(points):
                offset = (k - (len(points) - 1) / 2) * 0.12
                err = np.array([[max(value - low, 0)], [max(high - value, 0)]])
                ax.errorbar([value], [y + offset], xerr=err, fmt="o", color=color[name], capsize=3, ms=6,
                            label=name if y == 0 else None, zorder=2)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(list(reversed(list(rows))))
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlabel("correlation (x100), 95% interval")
        ax.set_title(bench)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=len(labels), bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
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
