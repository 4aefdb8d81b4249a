"""Comparing DVC experiments (e.g. a ``temp`` sweep) with the commit they branch from.

:func:`write_report` reads ``dvc exp show --json`` (the experiments of the
current commit, or those named), and writes ``README.md``, ``metrics.json`` and
figures: one row per experiment and variant with the params that differ from the
baseline commit, KorSTS-test and KLUE-dev AVG with their 95% intervals (from the
experiment's own ``metrics/<variant>.json``), and the difference to the
baseline's run with a paired bootstrap interval computed on both runs'
per-pair predictions (``eval/<variant>/``, read from DVC's cache at each
revision). Queued, running and failed experiments are listed as such, and a
variant whose stages an experiment did not rerun (``dvc exp run <targets>``) is
marked stale rather than shown with the baseline's numbers under new params.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pipeline import yamlio
from pipeline.card import card_order
from pipeline.errors import UserError
from pipeline.evaluate import BENCHMARKS, parse_predictions
from pipeline.metrics import bootstrap_intervals
from pipeline.params import BootstrapConfig

#: metrics files that are not a trained variant's
NOT_VARIANTS = ("baseline", "published", "compare")
#: the stages whose recorded params must match an experiment's for its numbers to be that experiment's
RESULT_STAGES = ("train", "evaluate")


@dataclass
class Run:
    """The baseline commit or one experiment, as ``dvc exp show`` reports it."""

    name: str
    rev: str
    state: str  # baseline | success | queued | running | failed
    params: dict[str, Any]  # params.yaml, nested
    metrics: dict[str, dict] = field(default_factory=dict)  # variant -> metrics/<variant>.json
    error: str = ""


def flatten(params: dict, prefix: str = "") -> dict[str, Any]:
    """Nested params as ``{dotted key: leaf value}`` (lists are leaves)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def differing(baseline: dict, params: dict) -> dict[str, Any]:
    """The dotted params whose value in ``params`` differs from ``baseline`` (a removed key maps to None)."""
    a, b = flatten(baseline), flatten(params)
    return {k: b.get(k) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _run(state: dict, name: str, status: str) -> Run:
    data = state.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    metrics = {}
    for path, result in (data.get("metrics") or {}).items():
        parts = Path(path).parts
        if len(parts) == 2 and parts[0] == "metrics" and Path(path).stem not in NOT_VARIANTS:
            metrics[Path(path).stem] = (result or {}).get("data") or {}
    error = state.get("error") or {}
    return Run(name=name, rev=state["rev"], state=status, params=params, metrics=metrics,
               error=(error.get("msg") or "") if isinstance(error, dict) else str(error))


def parse_exp_show(data: list[dict], names: Iterable[str] = ()) -> tuple[Run, list[Run]]:
    """(baseline commit, its experiments) from ``dvc exp show --json``; ``names`` keeps only those."""
    commits = [entry for entry in data if entry.get("rev") != "workspace"]
    if not commits:
        raise UserError("dvc exp show: no commit; commit the project (git) and run `dvc repro` first")
    head = commits[0]
    baseline = _run(head, head.get("name") or head["rev"][:7], "baseline")
    runs = []
    for exp_range in head.get("experiments") or []:
        latest = exp_range["revs"][0]
        status = ((exp_range.get("executor") or {}).get("state")) or "success"
        runs.append(_run(latest, exp_range.get("name") or latest.get("name") or latest["rev"][:7], status))
    names = list(names)
    if names:
        known = {r.name: r for r in runs}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UserError(f"experiment {unknown[0]!r} not found among the experiments of {baseline.name}; "
                            f"expected one of: {', '.join(known) or '(none)'}")
        runs = [known[n] for n in names]
    return baseline, runs


def exp_show(project: Path) -> list[dict]:
    """``dvc exp show --json`` in ``project`` (this interpreter's dvc)."""
    result = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=project,
                            capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{project}: `dvc exp show --json` failed: {last}")
    return json.loads(result.stdout)


# --- per-variant comparisons ----------------------------------------------------------------

def _lookup(params: dict, dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def stale_variants(project: Path, run: Run) -> set[str]:
    """Variants whose train/evaluate stages in ``run``'s dvc.lock were run with other params than ``run``'s."""
    shown = subprocess.run(["git", "show", f"{run.rev}:dvc.lock"], cwd=project, capture_output=True, text=True)
    if shown.returncode != 0:
        return set(run.metrics)
    stages = (yamlio.load(shown.stdout) or {}).get("stages", {})  # DVC wrote it: read as DVC reads it
    stale = set()
    for variant in run.metrics:
        recorded = [stages[f"{stage}@{variant}"].get("params", {}).get("params.yaml") or {}
                    for stage in RESULT_STAGES if f"{stage}@{variant}" in stages]
        if not recorded or any(_lookup(run.params, k) != v for params in recorded for k, v in params.items()):
            stale.add(variant)
    return stale


def predictions(project: Path, rev: str, variant: str) -> dict[str, list] | None:
    """Per-seed (gold, scores) of ``eval/<variant>/`` at ``rev``, from DVC's cache; None if not there."""
    from dvc.api import DVCFileSystem

    try:
        fs = DVCFileSystem(str(project), rev=rev)
        names = sorted(Path(p).name for p in fs.ls(f"eval/{variant}", detail=False))
        out = {}
        for bench in BENCHMARKS:
            files = [n for n in names if n.startswith(f"{bench}.seed-") and n.endswith(".tsv")]
            out[bench] = [parse_predictions(fs.read_text(f"eval/{variant}/{n}", encoding="utf-8")) for n in files]
        return out if all(out.values()) else None
    except (FileNotFoundError, OSError):
        return None


def paired_difference(ours: list, base: list, bootstrap: BootstrapConfig) -> tuple[float, float] | None:
    """95% paired bootstrap interval of AVG(ours) - AVG(base) on the same pairs; None if the pairs differ."""
    gold = ours[0][0]
    if any(len(g) != len(gold) or not (g == gold).all() for g, _ in ours + base):
        return None
    ci = bootstrap_intervals(gold, [s for _, s in ours], baseline=[s for _, s in base],
                             resamples=bootstrap.resamples, confidence=bootstrap.confidence, seed=bootstrap.seed)
    return ci["avg"]


def compare(project: Path, baseline: Run, runs: list[Run], bootstrap: BootstrapConfig) -> list[dict]:
    """One record per (run, variant), the baseline's first; a run without results gets one record."""
    base_preds = {v: predictions(project, baseline.rev, v) for v in baseline.metrics}
    records = []
    for run in [baseline] + runs:
        diff = {} if run is baseline else differing(baseline.params, run.params)
        if run.state != "baseline" and (run.state != "success" or not run.metrics):
            records.append({"experiment": run.name, "rev": run.rev, "state": run.state, "variant": None,
                            "params": diff, "error": run.error})
            continue
        stale = stale_variants(project, run) if run is not baseline else set()
        for variant in card_order(list(run.metrics)):
            record = {"experiment": run.name, "rev": run.rev, "state": "stale" if variant in stale else run.state,
                      "variant": variant, "params": diff}
            if variant not in stale:
                record.update(_numbers(project, run, variant, baseline, base_preds.get(variant), bootstrap))
            records.append(record)
    return records


def _numbers(project: Path, run: Run, variant: str, baseline: Run, base_preds, bootstrap) -> dict:
    out = {}
    preds = predictions(project, run.rev, variant) if run is not baseline else None
    for bench in BENCHMARKS:
        block = run.metrics[variant].get(bench) or {}
        if "avg" not in block:
            continue
        out[bench] = {"avg": block["avg"], "ci_low": block.get("avg_ci_low"), "ci_high": block.get("avg_ci_high")}
        base_block = (baseline.metrics.get(variant) or {}).get(bench) or {}
        if run is baseline or "avg" not in base_block:
            continue
        out[bench]["diff"] = block["avg"] - base_block["avg"]
        if preds is not None and base_preds is not None:
            ci = paired_difference(preds[bench], base_preds[bench], bootstrap)
            if ci is not None:
                out[bench]["diff_ci_low"], out[bench]["diff_ci_high"] = ci
    return out


# --- rendering ------------------------------------------------------------------------------

def _fmt(x: float) -> str:
    return f"{x:.2f}"


def _value(cell: dict | None, key: str) -> float | None:
    return None if not cell or cell.get(key) is None else float(cell[key])


def _cell(cell: dict | None, key: str, best: float | None) -> str:
    value = _value(cell, key)
    if value is None:
        return ""
    text = _fmt(value)
    lo, hi = (cell.get("ci_low"), cell.get("ci_high")) if key == "avg" else \
        (cell.get("diff_ci_low"), cell.get("diff_ci_high"))
    if key == "diff" and value > 0:
        text = "+" + text
    if best is not None and math.isclose(value, best, rel_tol=0, abs_tol=1e-12):
        text = f"**{text}**"
    return text if lo is None else f"{text} [{_fmt(lo)}, {_fmt(hi)}]"


def _params_text(params: dict) -> str:
    return ", ".join(f"`{k}={json.dumps(v, ensure_ascii=False)}`" for k, v in params.items()) or "—"


def table(records: list[dict]) -> list[str]:
    """The markdown comparison table; the best value of each numeric column in bold."""
    columns = [(bench, key) for bench in BENCHMARKS for key in ("avg", "diff")]
    best = []
    for bench, key in columns:
        values = [v for r in records if (v := _value(r.get(bench), key)) is not None and not math.isnan(v)]
        best.append(max(values) if values else None)
    titles = {("korsts_test", "avg"): "KorSTS test AVG [95% CI]", ("klue_dev", "avg"): "KLUE dev AVG [95% CI]",
              ("korsts_test", "diff"): "Δ KorSTS vs baseline [95% paired CI]",
              ("klue_dev", "diff"): "Δ KLUE vs baseline [95% paired CI]"}
    lines = ["| experiment | state | variant | params differing from the baseline | "
             + " | ".join(titles[c] for c in columns) + " |",
             "|---|---|---|---|" + "---:|" * len(columns)]
    for r in records:
        cells = [_cell(r.get(b), k, best[i]) for i, (b, k) in enumerate(columns)]
        state = r["state"] + (f": {r['error']}" if r.get("error") else "")
        lines.append(f"| {r['experiment']} | {state} | {r['variant'] or '—'} | {_params_text(r['params'])} | "
                     + " | ".join(cells) + " |")
    return lines


def sweeps(baseline: Run, records: list[dict]) -> dict[str, dict[str, dict[str, list]]]:
    """Numeric params swept with everything else fixed: {title: {benchmark title: {variant: [(x, avg, lo, hi)]}}}.

    Runs are grouped by what else they change: ``-S temp=0.1,0.2`` is one curve through the
    baseline (title ``temp``); ``-S temp=0.1,0.2 -S epochs=1`` one curve of two points (title
    ``temp (epochs=1)``). A curve needs two distinct values of the param.
    """
    def numeric(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    done = [r for r in records if r["variant"] and r["state"] in ("baseline", "success")]
    flat_base = flatten(baseline.params)
    groups: dict[tuple[str, str], list[tuple[Any, dict]]] = {}
    for param in sorted({k for r in done for k in r["params"]}):
        for r in done:
            if r["state"] == "baseline":
                groups.setdefault((param, ""), []).append((flat_base.get(param), r))
            elif param in r["params"]:
                context = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["params"].items() if k != param)
                groups.setdefault((param, context), []).append((r["params"][param], r))
    out: dict = {}
    for (param, context), points in groups.items():
        if not all(numeric(x) for x, _ in points) or len({x for x, _ in points}) < 2:
            continue
        panels: dict = {}
        for bench, (_, title) in BENCHMARKS.items():
            for x, r in points:
                cell = r.get(bench)
                if cell and cell.get("ci_low") is not None:
                    panels.setdefault(title, {}).setdefault(r["variant"], []).append(
                        (float(x), cell["avg"], cell["ci_low"], cell["ci_high"]))
        out[f"{param} ({context})" if context else param] = panels
    return out


def render(baseline: Run, records: list[dict], figures: dict[str, str]) -> str:
    """The report's markdown."""
    lines = ["# Experiments", "",
             f"Baseline: commit `{baseline.rev[:7]}` ({baseline.name}). One row per experiment and variant: the "
             "params that differ from the baseline commit, KorSTS test and KLUE-STS dev AVG (x100, headline "
             "protocol) with their 95% bootstrap intervals, and the difference to the baseline's run of the same "
             "variant with a 95% paired bootstrap interval (same pairs, same resamples; shown where both runs' "
             "predictions are in the DVC cache). The best value of each column is bold. `stale`: the experiment "
             "did not rerun this variant (its dvc.lock params are not the experiment's), so it has no numbers "
             "of its own.", ""]
    lines += table(records)
    for param, rel in figures.items():
        lines += ["", f"## Sweep: `{param}`", "", f"![{param} vs AVG]({rel})"]
    return "\n".join(lines) + "\n"


def write_report(project: Path, out: Path, names: Iterable[str] = (), data: list[dict] | None = None) -> dict:
    """Read the experiments of ``project`` and write ``out/README.md``, ``metrics.json`` and ``figures/``.

    Args:
        project: the DVC project (git repository) holding the experiments.
        out: the report folder (replaced atomically).
        names: experiment names to compare; empty = every experiment of the current commit.
        data: ``dvc exp show --json`` output, if already read.

    Returns:
        the metrics.json content.
    """
    from pipeline.atomic import atomic_dir, write_json, write_text
    from pipeline.plots import sweep

    baseline, runs = parse_exp_show(exp_show(project) if data is None else data, names)
    if not baseline.metrics:
        raise UserError(f"{project}: the baseline commit has no metrics/<variant>.json; run `dvc repro` and commit")
    boot = baseline.params.get("bootstrap") or {}
    bootstrap = BootstrapConfig(resamples=int(boot.get("resamples", 1000)),
                                confidence=float(boot.get("confidence", 0.95)), seed=int(boot.get("seed", 0)))
    records = compare(project, baseline, runs, bootstrap)
    with atomic_dir(out) as tmp:
        figures = {}
        for i, (title, panels) in enumerate(sweeps(baseline, records).items()):
            rel = f"figures/sweep-{i + 1}-{title.split(' ')[0]}.png"
            sweep(tmp / rel, title, panels)
            figures[title] = rel
        metrics = {"baseline": {"name": baseline.name, "rev": baseline.rev},
                   "bootstrap": {"resamples": bootstrap.resamples, "confidence": bootstrap.confidence,
                                 "seed": bootstrap.seed},
                   "rows": records}
        write_json(tmp / "metrics.json", metrics)
        write_text(tmp / "README.md", render(baseline, records, figures))
    return metrics
