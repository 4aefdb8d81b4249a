"""The report: the card's tables with our values, intervals and differences; figures; provenance.

:func:`collect` reads the pipeline's outputs into a :class:`ReportInputs`;
:func:`render` turns them into markdown (deterministic: no timestamps, sorted
keys, fixed number formats). Wall times go to ``timings.json`` beside the
markdown, so two runs of the same inputs give byte-identical README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.card import CARD, CITATIONS, COLUMN_TITLES, PUBLISHED, card_row, row_label
from pipeline.evaluate import BENCHMARKS, read_predictions
from pipeline.hub import models_manifest
from pipeline.metrics import KEYS, bootstrap_intervals
from pipeline.params import BootstrapConfig
from pipeline.provenance import is_local_record, model_label, shown_config, source_label

SELECTION_LABEL = {"korsts_dev.cosine_pearson": "KorSTS dev cosine Pearson",
                   "korsts_dev.cosine_spearman": "KorSTS dev cosine Spearman"}


def _read_json(path: Path, default: Any = None) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default


@dataclass
class VariantResult:
    name: str
    metrics: dict
    trainings: dict[str, dict]  # seed label -> training.json
    predictions: dict[str, dict[str, Path]]  # seed label -> bench -> predictions file
    curves: dict[str, dict[str, list[tuple[int, float]]]]  # seed label -> {"loss": [...], "lr": [...]}


@dataclass
class ReportInputs:
    variants: list[VariantResult]
    baseline: dict = field(default_factory=dict)
    published: dict = field(default_factory=dict)
    published_manifest: dict = field(default_factory=dict)
    published_dir: Path | None = None
    data_manifest: dict = field(default_factory=dict)
    models_manifest: dict = field(default_factory=dict)
    train_manifests: dict = field(default_factory=dict)
    lock: dict = field(default_factory=dict)
    code: dict = field(default_factory=dict)
    note: str = ""
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)


def read_dvclive_series(folder: Path, seed_label: str) -> dict[str, list[tuple[int, float]]]:
    """Loss and learning-rate series of one seed from dvclive's TSVs (timestamps ignored)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for key, rel in (("loss", "train/loss.tsv"), ("lr", "train/lr.tsv")):
        path = folder / "plots" / "metrics" / seed_label / rel
        if not path.is_file():
            continue
        rows = path.read_text(encoding="utf-8").splitlines()
        header = rows[0].split("\t")
        s, v = header.index("step"), len(header) - 1
        out[key] = [(int(r.split("\t")[s]), float(r.split("\t")[v])) for r in rows[1:] if r]
    return out


def collect(*, variants: list[str], metrics_dir: Path, eval_dir: Path, models_dir: Path, live_dir: Path,
            raw_dir: Path, data_models_dir: Path, train_dir: Path, lock_path: Path, code: dict,
            note: str, bootstrap: BootstrapConfig) -> ReportInputs:
    """Read every pipeline output the report needs; variants without results are skipped."""
    results = []
    for name in variants:
        metrics = _read_json(metrics_dir / f"{name}.json")
        if metrics is None:
            continue
        trainings, predictions, curves = {}, {}, {}
        for folder in sorted(models_dir.joinpath(name).glob("seed-*"), key=lambda p: int(p.name.split("-")[1])):
            label = folder.name
            trainings[label] = _read_json(folder / "training.json", {})
            predictions[label] = {b: eval_dir / name / f"{b}.{label}.tsv" for b in BENCHMARKS}
            curves[label] = read_dvclive_series(live_dir / name, label)
        results.append(VariantResult(name, metrics, trainings, predictions, curves))
    lock = yaml.safe_load(lock_path.read_text(encoding="utf-8")) if lock_path.is_file() else {}
    return ReportInputs(
        variants=results,
        baseline=_read_json(metrics_dir / "baseline.json", {}),
        published=_read_json(metrics_dir / "published.json", {}),
        published_manifest=_read_json(eval_dir / "published" / "manifest.json", {}),
        published_dir=eval_dir / "published",
        data_manifest=_read_json(raw_dir / "manifest.json", {}).get("files", {}),
        models_manifest=models_manifest(data_models_dir),
        train_manifests={k: _read_json(train_dir / k / "manifest.json", {}) for k in ("wiki", "nli")},
        lock=(lock or {}).get("stages", {}),
        code=code, note=note, bootstrap=bootstrap,
    )


# --- formatting -------------------------------------------------------------------

def fmt(x: float) -> str:
    """The report's one number format: two decimals (the card's precision)."""
    return f"{x:.2f}"


def half_width(block: dict, key: str) -> float | None:
    if f"{key}_ci_low" not in block:
        return None
    return (block[f"{key}_ci_high"] - block[f"{key}_ci_low"]) / 2


def value_cell(block: dict, key: str) -> str:
    hw = half_width(block, key)
    return fmt(block[key]) if hw is None else f"{fmt(block[key])} ± {fmt(hw)}"


def _row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def _header() -> list[str]:
    return ["| Model | " + " | ".join(COLUMN_TITLES) + " |", "|---|" + "---:|" * len(COLUMN_TITLES)]


def label_of(variant: str) -> str:
    return row_label(variant)


def card_values(bench: str, variant: str) -> dict | None:
    """The card's published row for the row this variant reproduces (None if it reproduces none)."""
    row = card_row(variant)
    return CARD.get(bench, {}).get(row) if row else None


# --- comparisons ------------------------------------------------------------------

def published_differences(inputs: ReportInputs) -> dict:
    """Paired bootstrap intervals of ours - published, per variant and benchmark (same pairs, same resamples)."""
    out: dict = {}
    if not inputs.published or inputs.published_dir is None:
        return out
    for result in inputs.variants:
        row = card_row(result.name)
        if row not in inputs.published:
            continue
        out[result.name] = {}
        for bench in BENCHMARKS:
            pub_path = inputs.published_dir / f"{bench}.{row}.tsv"
            files = [p[bench] for p in result.predictions.values()]
            if not pub_path.is_file() or not all(f.is_file() for f in files):
                continue
            gold, pub_scores = read_predictions(pub_path)
            ours = []
            for f in files:
                g, scores = read_predictions(f)
                if not np.array_equal(g, gold):
                    raise ValueError(f"{f} and {pub_path} score different pairs")
                ours.append(scores)
            ci = bootstrap_intervals(gold, ours, baseline=[pub_scores], resamples=inputs.bootstrap.resamples,
                                     confidence=inputs.bootstrap.confidence, seed=inputs.bootstrap.seed)
            ours_block = result.metrics[bench]
            pub_block = inputs.published[row][bench]
            out[result.name][bench] = {key: {"diff": ours_block[key] - pub_block[key], "ci_low": ci[key][0],
                                             "ci_high": ci[key][1]} for key in KEYS}
    return out


def combined_metrics(inputs: ReportInputs, comparisons: dict) -> dict:
    """Everything the tables show, in one JSON (``metrics.json`` beside the report)."""
    return {
        "variants": {r.name: r.metrics for r in inputs.variants},
        "baseline": inputs.baseline,
        "published": inputs.published,
        "ours_minus_published": comparisons,
    }


# --- markdown ---------------------------------------------------------------------

def benchmark_table(inputs: ReportInputs, bench: str) -> list[str]:
    lines = _header()
    for result in inputs.variants:
        block = result.metrics[bench]
        label = label_of(result.name)
        lines.append(_row(f"{label} — ours", [value_cell(block, k) for k in KEYS]))
        card = card_values(bench, result.name)
        if card:
            lines.append(_row(f"{label} — card", [fmt(card[k]) for k in KEYS]))
            cells = []
            for k in KEYS:
                diff = fmt(block[k] - card[k])
                outside = f"{k}_ci_low" in block and not (block[f"{k}_ci_low"] <= card[k] <= block[f"{k}_ci_high"])
                cells.append(f"**{diff}**" if outside else diff)
            lines.append(_row(f"{label} — Δ ours − card", cells))
    for variant, block in inputs.published.items():
        if bench in block:
            record = inputs.published_manifest.get("checkpoints", {}).get(variant)
            model = model_label(record) if record else PUBLISHED.get(variant)
            lines.append(_row(f"{model} — published checkpoint, our evaluation",
                              [value_cell(block[bench], k) for k in KEYS]))
    for slug, block in inputs.baseline.items():
        lines.append(_row(f"{_base_label(inputs, slug)} — untrained baseline",
                          [value_cell(block[bench], k) for k in KEYS]))
    return lines


def _base_label(inputs: ReportInputs, slug: str) -> str:
    """A base model's name in the report (see :func:`pipeline.provenance.model_label`)."""
    record = inputs.models_manifest.get(slug)
    return model_label(record) if record else slug


def seed_section(inputs: ReportInputs) -> list[str]:
    multi = [r for r in inputs.variants if "seeds" in r.metrics]
    if not multi:
        return []
    lines = ["## Seed variance", "",
             "Each variant trained once per seed; the tables above show the mean over seeds. Below: every "
             "seed, and the mean ± sample standard deviation.", ""]
    for bench, (_, title) in BENCHMARKS.items():
        lines += [f"**{title}**", ""] + _header()
        for result in multi:
            for seed, per in result.metrics["seeds"].items():
                lines.append(_row(f"{label_of(result.name)} — {seed}", [fmt(per[bench][k]) for k in KEYS]))
            block = result.metrics[bench]
            lines.append(_row(f"{label_of(result.name)} — mean ± std",
                              [f"{fmt(block[k])} ± {fmt(block[k + '_std'])}" for k in KEYS]))
        lines.append("")
    return lines


def protocol_section(inputs: ReportInputs) -> list[str]:
    lines = ["## Evaluation protocol: the card's quirks vs clean", "",
             "`card` reproduces the card's evaluation code: `,` `'` `\"` deleted from KorSTS sentences and "
             "KLUE-STS `labels.label` (one decimal). `clean` uses the sentences as published and "
             "`labels.real-label`. Both use [CLS] of the last hidden state, fp32, max length 64, "
             "Pearson/Spearman over the whole set. AVG under each:", "",
             "| Model | KorSTS test (card) | KorSTS test (clean) | Δ | KLUE-STS dev (card) | KLUE-STS dev (clean) | Δ |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(f"{label_of(r.name)} — ours", r.metrics) for r in inputs.variants]
    rows += [(f"{v} — published", m) for v, m in inputs.published.items()]
    rows += [(f"{_base_label(inputs, s)} — untrained", m)
             for s, m in inputs.baseline.items()]
    for label, metrics in rows:
        by = metrics.get("by_protocol", {})
        if "card" not in by or "clean" not in by:
            continue
        cells = []
        for bench in BENCHMARKS:
            card, clean = by["card"][bench]["avg"], by["clean"][bench]["avg"]
            cells += [fmt(card), fmt(clean), fmt(clean - card)]
        lines.append(_row(label, cells))
    return lines + [""]


def published_section(inputs: ReportInputs, comparisons: dict) -> list[str]:
    lines = ["## Ours vs the published checkpoints", ""]
    if not inputs.published:
        enabled = inputs.published_manifest.get("enabled")
        why = "`published.enabled` is false (no hub access)" if enabled is False else "not evaluated"
        return lines + [f"Published checkpoints: {why}.", ""]
    lines += ["Difference ours − published on the same pairs, with a 95% paired bootstrap interval. "
              "An interval that excludes 0 (bold) means our training differs from theirs; a published row that "
              "differs from the card means the evaluation differs.", "",
              "| Model | Benchmark | " + " | ".join(COLUMN_TITLES) + " |", "|---|---|" + "---:|" * len(KEYS)]
    for variant, by_bench in comparisons.items():
        for bench, cols in by_bench.items():
            cells = []
            for k in KEYS:
                c = cols[k]
                text = f"{fmt(c['diff'])} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"
                cells.append(f"**{text}**" if c["ci_low"] > 0 or c["ci_high"] < 0 else text)
            lines.append(f"| {label_of(variant)} | {BENCHMARKS[bench][1]} | " + " | ".join(cells) + " |")
    return lines + [""]


def figures_section(figures: dict[str, dict[str, str]]) -> list[str]:
    lines = ["## Figures", ""]
    for variant, figs in figures.items():
        lines += [f"### {label_of(variant)}", ""]
        for caption, rel in figs.items():
            lines += [f"![{caption}]({rel})", ""]
    return lines


def _lock_outs(inputs: ReportInputs, stage: str) -> list[tuple[str, str]]:
    entry = inputs.lock.get(stage, {})
    # wall-time records change on every run; they are listed in timings.json instead
    return [(o["path"], o.get("md5", "")) for o in entry.get("outs", []) if not o["path"].startswith("timings/")]


def blank_lines_note(sentences: int, blank: int) -> str:
    """The unsupervised data line of the provenance: how many blank corpus lines were skipped, and
    that the card's reader trained on them (each as an empty sentence)."""
    if not blank:
        return f"Unsupervised data: {sentences} sentences (no blank lines in the corpus)."
    return (f"Unsupervised data: {sentences} sentences; {blank} blank line{'s' if blank != 1 else ''} of the corpus "
            "skipped. The card's reader (`readlines()`) kept them, so the card trained on "
            f"{sentences + blank} rows, {blank} of them an empty sentence (only [CLS] [SEP]).")


def provenance_section(inputs: ReportInputs) -> list[str]:
    code = inputs.code
    commit = code.get("commit") or "unknown (not a git checkout)"
    dirty = {True: "uncommitted changes present", False: "clean tree", None: "unknown"}[code.get("dirty")]
    lines = ["## Provenance", "",
             f"Code: commit `{commit}` ({dirty}; generated reports excluded). Every number above is in "
             "[metrics.json](metrics.json); wall times per stage are in [timings.json](timings.json).", "",
             "### Input files", "", "| Source | File | From | Revision | sha256 | Rows |", "|---|---|---|---|---|---:|"]
    for key in sorted(inputs.data_manifest):
        f = inputs.data_manifest[key]
        pin = "" if f.get("sha256_pinned") else " (recorded, not pinned)"
        lines.append(f"| {key} | `{f['file']}` | {source_label(f['source'])} | {f.get('revision') or '-'} | "
                     f"`{f['sha256']}`{pin} | {f.get('rows', '-')} |")
    lines += ["", "### Base models", "", "| Model | From | Requested revision | Resolved commit | Weights sha256 |",
              "|---|---|---|---|---|"]
    for slug in sorted(inputs.models_manifest):
        m = inputs.models_manifest[slug]
        warn = "" if m.get("pinned") else " ⚠ branch or tag, not a pinned commit"
        source = "local folder" if is_local_record(m) else m.get("source")
        lines.append(f"| {_base_label(inputs, slug)} | {source} | {m.get('revision') or '-'}{warn} | "
                     f"{m.get('commit') or '-'} | `{m.get('files', {}).get('model.safetensors', '-')}` |")
    wiki, nli = inputs.train_manifests.get("wiki") or {}, inputs.train_manifests.get("nli") or {}
    lines += [""]
    if wiki:
        lines.append(blank_lines_note(wiki['sentences'], wiki['blank_lines_skipped']))
    if nli:
        lines.append(f"Supervised data: {nli['triplets']} triplets from {nli['pairs_read']} KorNLI pairs "
                     f"(recipe `{nli['recipe']}`, {nli['dropped_na']} dropped for `n/a`).")
    lines.append("")
    for result in inputs.variants:
        lines += [f"### {label_of(result.name)} (`{result.name}`)", ""]
        first = next(iter(result.trainings.values()), {})
        cfg = shown_config(first)
        env = first.get("environment", {})
        for label, training in result.trainings.items():
            metric = training.get("selection_metric", "")
            best = training.get("best_dev", {}).get(metric.split(".")[-1])
            best_text = f" = {fmt(best)}" if best is not None else ""
            lines.append(f"- {label}: selected step {training.get('selected_step')} of {training.get('total_steps')} "
                         f"by {SELECTION_LABEL.get(metric, metric)}{best_text}")
        deterministic = "deterministic kernels" if cfg.get("deterministic") else "default (fast) kernels"
        mode = "CPU (deterministic)" if first.get("device") == "cpu" else f"CUDA, {deterministic}"
        lines += [f"- Hardware: {env.get('gpu') or env.get('cpu')}; {first.get('processes', 1)} process(es); "
                  f"{mode}; torch {env.get('torch')}, CUDA {env.get('cuda') or '-'}, "
                  f"transformers {env.get('transformers')}, Python {env.get('python')}", ""]
        lines += ["| Param | Value |", "|---|---|"]
        for key in sorted(cfg):
            lines.append(f"| {key} | `{cfg[key]}` |")
        lines += ["", "| DVC stage | Output | md5 (dvc.lock) |", "|---|---|---|"]
        for stage in (f"tokenize@{result.name}", f"train@{result.name}", f"evaluate@{result.name}"):
            for path, md5 in _lock_outs(inputs, stage):
                lines.append(f"| {stage} | `{path}` | `{md5}` |")
        lines.append("")
    return lines


def render(inputs: ReportInputs, figures: dict[str, dict[str, str]], comparisons: dict) -> str:
    """The report markdown."""
    lines = ["# SimCSE-KO reproduction", ""]
    if inputs.note:
        lines += [f"> {inputs.note}", ""]
    trained = ", ".join(f"`{r.name}`" for r in inputs.variants) or "none yet"
    lines += [f"Variants with results: {trained}. Model card being reproduced: "
              "`snumin44/simcse-ko-bert-unsupervised` and its three siblings (SimCSE on klue/bert-base and "
              "klue/roberta-base; unsupervised on a Korean Wikipedia corpus, supervised on KorNLI).", ""]
    if inputs.variants:
        lines += ["| Variant | Base model | Training data | KorSTS test AVG (card) | KLUE-STS dev AVG (card) |",
                  "|---|---|---|---:|---:|"]
        for r in inputs.variants:
            cfg = shown_config(next(iter(r.trainings.values()), {}))
            data = {"wiki": "wiki corpus (unsup)", "nli": "KorNLI triplets (sup)"}.get(cfg.get("data"), "-")
            cells = []
            for bench in BENCHMARKS:
                card = card_values(bench, r.name)
                cells.append(f"{value_cell(r.metrics[bench], 'avg')} ({fmt(card['avg']) if card else '-'})")
            lines.append(f"| {label_of(r.name)} | {cfg.get('model', '-')} | {data} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Values are x100. `±` is the half-width of a 95% paired bootstrap interval "
              f"({inputs.bootstrap.resamples} resamples of the pairs, seed {inputs.bootstrap.seed}). "
              "**Bold** Δ: the card's value lies outside our interval.", ""]
    for bench, (_, title) in BENCHMARKS.items():
        lines += [f"## {title}", ""] + benchmark_table(inputs, bench) + [""]
    lines += seed_section(inputs)
    lines += protocol_section(inputs)
    lines += published_section(inputs, comparisons)
    lines += figures_section(figures)
    lines += provenance_section(inputs)
    lines += ["## References", ""] + [f"- {c}" for c in CITATIONS] + [""]
    return "\n".join(lines)


def draw_figures(inputs: ReportInputs, folder: Path, rel: str = "figures") -> dict[str, dict[str, str]]:
    """Draw every figure into ``folder``; return {variant: {caption: relative path}}."""
    from pipeline import plots

    figures: dict[str, dict[str, str]] = {}
    for r in inputs.variants:
        label = label_of(r.name)
        figs: dict[str, str] = {}
        if any(r.curves.values()):
            plots.training_curves(folder / f"training_{r.name}.png", f"Training loss and learning rate — {label}",
                                  r.curves)
            figs[f"Training loss and learning rate per step — {label}"] = f"{rel}/training_{r.name}.png"
        histories = {s: t.get("dev_history", []) for s, t in r.trainings.items() if t.get("dev_history")}
        if histories:
            metric = next(iter(r.trainings.values()))["selection_metric"].split(".")[-1]
            plots.dev_curve(folder / f"dev_{r.name}.png", f"KorSTS dev during training — {label} "
                            f"(selection: {metric.replace('_', ' ')})", histories,
                            {s: r.trainings[s]["selected_step"] for s in histories}, metric)
            figs[f"KorSTS dev score per evaluation, selected checkpoint marked — {label}"] = f"{rel}/dev_{r.name}.png"
        first = next(iter(r.predictions.values()), {})
        panels = {}
        for bench, path in first.items():
            if path.is_file():
                gold, scores = read_predictions(path)
                panels[BENCHMARKS[bench][1]] = (gold, scores["cosine"])
        if panels:
            seed = next(iter(r.predictions))
            plots.scatter(folder / f"scatter_{r.name}.png", f"Gold score vs predicted cosine — {label} ({seed})",
                          panels)
            figs[f"Gold score vs predicted cosine similarity — {label}"] = f"{rel}/scatter_{r.name}.png"
        bar_panels = {}
        for bench, (_, title) in BENCHMARKS.items():
            block = r.metrics[bench]
            ci = {k: (block[f"{k}_ci_low"], block[f"{k}_ci_high"]) for k in KEYS} if "avg_ci_low" in block else None
            bar_panels[title] = ({k: block[k] for k in KEYS}, card_values(bench, r.name), ci)
        plots.bars(folder / f"bars_{r.name}.png", f"The card's columns, ours vs the card — {label}", bar_panels)
        figs[f"AVG and the eight columns, ours vs the card — {label}"] = f"{rel}/bars_{r.name}.png"
        figures[r.name] = figs
    return figures


def mteb_models(inputs: ReportInputs, stage_timings: dict) -> dict[str, dict]:
    """Every model the pipeline evaluated, named as on the hub, for :func:`pipeline.mteb.write_results`:
    the variants as packaged (``simcse-ko-<variant>-repro``), the published checkpoints and the untrained
    base models. A stage that evaluated several models shares its wall time evenly among them (the only
    evaluation time recorded per model)."""
    from pipeline.hub import model_slug
    from pipeline.modelcard import package_name

    def seconds(stage: str, share: int = 1) -> float | None:
        wall = stage_timings.get(stage, {}).get("wall_seconds")
        return None if wall is None else round(wall / max(share, 1), 2)

    models = {package_name(r.name): {"metrics": r.metrics, "revision": None, "seconds": seconds(f"evaluate@{r.name}")}
              for r in inputs.variants}
    checkpoints = inputs.published_manifest.get("checkpoints", {})
    for variant, metrics in inputs.published.items():
        record = checkpoints.get(variant, {"model": PUBLISHED.get(variant, variant)})
        name = model_slug(record["model"]) if is_local_record(record) else record["model"]
        models[name] = {"metrics": metrics, "revision": record.get("commit"),
                        "seconds": seconds("published", len(inputs.published))}
    for slug, metrics in inputs.baseline.items():
        record = inputs.models_manifest.get(slug)
        name = record["model"] if record and not is_local_record(record) else slug
        models[name] = {"metrics": metrics, "revision": (record or {}).get("commit"),
                        "seconds": seconds("baseline", len(inputs.baseline))}
    return models


def timings(timing_dir: Path) -> dict:
    """All stage wall times (timings/*.json), keyed by stage."""
    out = {}
    for path in sorted(timing_dir.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        out[record.get("stage", path.stem)] = record
    return out
