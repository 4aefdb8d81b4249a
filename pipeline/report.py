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

from pipeline.card import (CARD, CITATIONS, COLUMN_TITLES, CORPUS_SENTENCES, DATA, HARDWARE, PUBLISHED, card_row,
                           card_settings, row_label)
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
    compare: dict = field(default_factory=dict)  # metrics/compare.json: {hub id: metrics}
    compare_manifest: dict = field(default_factory=dict)  # eval/compare/manifest.json
    baseline_dir: Path | None = None
    data_manifest: dict = field(default_factory=dict)
    models_manifest: dict = field(default_factory=dict)
    train_manifests: dict = field(default_factory=dict)
    lock: dict = field(default_factory=dict)
    code: dict = field(default_factory=dict)
    note: str = ""
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)
    sections: dict[str, str] = field(default_factory=dict)  # extra {title: markdown} (param report_sections)


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
            note: str, bootstrap: BootstrapConfig, sections: dict[str, str] | None = None) -> ReportInputs:
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
        compare=_read_json(metrics_dir / "compare.json", {}),
        compare_manifest=_read_json(eval_dir / "compare" / "manifest.json", {}),
        baseline_dir=eval_dir / "baseline",
        data_manifest=_read_json(raw_dir / "manifest.json", {}).get("files", {}),
        models_manifest=models_manifest(data_models_dir),
        train_manifests={k: _read_json(train_dir / k / "manifest.json", {}) for k in ("wiki", "nli")},
        lock=(lock or {}).get("stages", {}),
        code=code, note=note, bootstrap=bootstrap, sections=dict(sections or {}),
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

def paired_difference(inputs: ReportInputs, result: VariantResult, bench: str, ref_path: Path,
                      ref_block: dict) -> dict | None:
    """{key: {diff, ci_low, ci_high}} of a variant (mean over its seeds) minus a reference model on ``bench``.

    The interval is a paired bootstrap: the same resampled pairs score both, with the
    report's resamples and seed. None if a predictions file is missing.
    """
    files = [p[bench] for p in result.predictions.values()]
    if not ref_path.is_file() or not files or not all(f.is_file() for f in files):
        return None
    gold, ref_scores = read_predictions(ref_path)
    ours = []
    for f in files:
        g, scores = read_predictions(f)
        if not np.array_equal(g, gold):
            raise ValueError(f"{f} and {ref_path} score different pairs")
        ours.append(scores)
    ci = bootstrap_intervals(gold, ours, baseline=[ref_scores], resamples=inputs.bootstrap.resamples,
                             confidence=inputs.bootstrap.confidence, seed=inputs.bootstrap.seed)
    block = result.metrics[bench]
    return {key: {"diff": block[key] - ref_block[key], "ci_low": ci[key][0], "ci_high": ci[key][1]} for key in KEYS}


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
            diff = paired_difference(inputs, result, bench, inputs.published_dir / f"{bench}.{row}.tsv",
                                     inputs.published[row][bench])
            if diff is not None:
                out[result.name][bench] = diff
    return out


def base_model_slug(inputs: ReportInputs, result: VariantResult) -> str | None:
    """The data/models folder name of the base model a variant was trained from."""
    model = next(iter(result.trainings.values()), {}).get("config", {}).get("model")
    return next((slug for slug, record in inputs.models_manifest.items() if record.get("model") == model), None)


def baseline_differences(inputs: ReportInputs) -> dict:
    """Paired bootstrap intervals of trained - untrained (the variant's own base model), per variant and benchmark."""
    out: dict = {}
    if not inputs.baseline or inputs.baseline_dir is None:
        return out
    for result in inputs.variants:
        slug = base_model_slug(inputs, result)
        if slug not in inputs.baseline:
            continue
        per_bench = {}
        for bench in BENCHMARKS:
            diff = paired_difference(inputs, result, bench, inputs.baseline_dir / f"{bench}.{slug}.tsv",
                                     inputs.baseline[slug][bench])
            if diff is not None:
                per_bench[bench] = diff
        if per_bench:
            out[result.name] = per_bench
    return out


def combined_metrics(inputs: ReportInputs, comparisons: dict, improvements: dict | None = None) -> dict:
    """Everything the tables show, in one JSON (``metrics.json`` beside the report)."""
    return {
        "variants": {r.name: r.metrics for r in inputs.variants},
        "baseline": inputs.baseline,
        "published": inputs.published,
        "compare": inputs.compare,
        "ours_minus_published": comparisons,
        "trained_minus_untrained": improvements or {},
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


def difference_cell(c: dict) -> str:
    """``diff [low, high]``, bold when the interval excludes 0."""
    text = f"{fmt(c['diff'])} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"
    return f"**{text}**" if c["ci_low"] > 0 or c["ci_high"] < 0 else text


def difference_table(comparisons: dict) -> list[str]:
    """One row per variant and benchmark: each column's difference with its paired interval."""
    lines = ["| Model | Benchmark | " + " | ".join(COLUMN_TITLES) + " |", "|---|---|" + "---:|" * len(KEYS)]
    for variant, by_bench in comparisons.items():
        for bench, cols in by_bench.items():
            lines.append(f"| {label_of(variant)} | {BENCHMARKS[bench][1]} | "
                         + " | ".join(difference_cell(cols[k]) for k in KEYS) + " |")
    return lines


def published_section(inputs: ReportInputs, comparisons: dict) -> list[str]:
    lines = ["## Ours vs the published checkpoints", ""]
    if not inputs.published:
        enabled = inputs.published_manifest.get("enabled")
        why = "`published.enabled` is false (no hub access)" if enabled is False else "not evaluated"
        return lines + [f"Published checkpoints: {why}.", ""]
    lines += ["Difference ours − published on the same pairs, with a 95% paired bootstrap interval. "
              "An interval that excludes 0 (bold) means our training differs from theirs; a published row that "
              "differs from the card means the evaluation differs.", ""]
    return lines + difference_table(comparisons) + [""]


def improvement_section(inputs: ReportInputs, improvements: dict) -> list[str]:
    if not improvements:
        return []
    lines = ["## Trained − untrained", "",
             "Each variant minus its untrained base model (same evaluation, same pairs), with a 95% paired "
             "bootstrap interval. Bold: the interval excludes 0, so training changed the score.", ""]
    return lines + difference_table(improvements) + [""]


def extra_sections(inputs: ReportInputs) -> list[str]:
    lines = []
    for title, text in inputs.sections.items():
        lines += [f"## {title}", "", str(text).strip(), ""]
    return lines


# --- what the run trained on, and how it differs from the card ------------------------

#: `from` of a training-data manifest -> short name (the summary table)
DATA_NAMES = {"wiki": "wiki corpus (unsup)", "korsts_xnli": "KorSTS train + XNLI-ko dev sentences (unsup)",
              "kornli_train": "KorNLI triplets (sup)", "xnli_test": "XNLI-ko test triplets (sup)"}


def data_from(manifest: dict) -> str:
    """The builder a training-data manifest came from (manifests older than `corpus.from` were wiki / KorNLI)."""
    return manifest.get("from") or ("wiki" if manifest.get("kind") == "wiki" else "kornli_train")


def describe_data(manifest: dict) -> str:
    """One sentence on a training-data manifest (corpus or triplets stage): what was read, what was kept."""
    source = data_from(manifest)
    if manifest.get("kind") == "wiki":
        n = manifest["sentences"]
        if source == "korsts_xnli":
            text = (f"the {manifest['distinct']:,} distinct sentences of KorSTS train and XNLI-ko dev "
                    f"({manifest['sentences_read']:,} read), shuffled with seed {manifest['seed']}")
        else:
            text = f"the wiki corpus ({manifest['blank_lines_skipped']} blank lines skipped)"
        total = manifest.get("distinct", manifest.get("sentences_read", n))
        cap = f"; the first {n:,} kept (`corpus.max_sentences`)" if n < total else ""
        return f"{n:,} sentences: {text}{cap}"
    name = {"kornli_train": "KorNLI multinli + snli train", "xnli_test": "XNLI-ko test"}.get(source, source)
    n, built = manifest["triplets"], manifest.get("built", manifest["triplets"])
    cap = f"; the first {n:,} of {built:,} kept (`triplets.max_triplets`)" if n < built else ""
    return (f"{n:,} triplets (recipe `{manifest['recipe']}`) from {manifest['pairs_read']:,} {name} pairs "
            f"({manifest['dropped_na']} dropped for `n/a`){cap}")


def _hardware(inputs: ReportInputs) -> str:
    first = next((t for r in inputs.variants for t in r.trainings.values()), {})
    env = first.get("environment", {})
    if first.get("device") == "cpu":
        return f"CPU ({env.get('cpu')}, {env.get('cpu_count')} logical cores), fp32"
    precision = first.get("config", {}).get("precision")
    return f"{first.get('processes', 1)} × {env.get('gpu')}, {precision} autocast"


def deviations(inputs: ReportInputs) -> list[tuple[str, str, str]]:
    """(setting, the card's value, this run's value) for every card setting some variant does not keep,
    then the training data and the hardware (always listed)."""
    rows = []
    differing: dict[str, dict[str, list[str]]] = {}
    reference: dict[str, str] = {}
    for result in inputs.variants:
        cfg = shown_config(next(iter(result.trainings.values()), {}))  # a local model by name, never its path
        for key, card_value in card_settings(result.name).items():
            if key in cfg and cfg[key] != card_value:
                reference.setdefault(key, str(card_value))
                differing.setdefault(key, {}).setdefault(str(cfg[key]), []).append(result.name)
    for key, by_value in differing.items():
        run = "; ".join(f"`{value}` ({', '.join(names)})" for value, names in by_value.items())
        rows.append((key, f"`{reference[key]}`", run))
    kinds = {next(iter(r.trainings.values()), {}).get("config", {}).get("data") for r in inputs.variants}
    for kind, setting in (("wiki", "unsupervised data"), ("nli", "supervised data")):
        manifest = inputs.train_manifests.get(kind) or {}
        if kind in kinds and manifest:
            run = describe_data(manifest)
            if kind == "wiki":
                run += f" ({manifest['sentences'] / CORPUS_SENTENCES:.2%} of the card's 1M)"
            rows.append((setting, DATA[kind], run))
    if inputs.variants:
        rows.append(("hardware", HARDWARE, _hardware(inputs)))
    return rows


def deviations_lines(inputs: ReportInputs) -> list[str]:
    rows = deviations(inputs)
    if not rows:
        return []
    lines = ["**This run vs the card's settings** (every card setting a variant changes, then the data and "
             "hardware):", "", "| Setting | Card | This run |", "|---|---|---|"]
    return lines + [f"| {key} | {card} | {run} |" for key, card, run in rows] + [""]


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
    """The provenance's note on blank corpus lines: we skip them, the card's reader trained on them
    (each as an empty sentence). Empty when the corpus has none."""
    if not blank:
        return ""
    return (f"{blank} blank line{'s' if blank != 1 else ''} of the corpus skipped here. The card's reader "
            f"(`readlines()`) kept them, so the card trained on {sentences + blank} rows, {blank} of them an "
            "empty sentence (only [CLS] [SEP]).")


def compared_provenance(inputs: ReportInputs) -> list[str]:
    """Provenance of the hub checkpoints the report compares with: the card's and the `compare` list."""
    records = [(r.get("model", v), r) for v, r in inputs.published_manifest.get("checkpoints", {}).items()]
    records += [(m, r) for m, r in inputs.compare_manifest.get("models", {}).items()]
    if not records:
        return []
    from pipeline.hubeval import embedding_text

    lines = ["", "### Evaluated hub checkpoints", "",
             "| Model | Requested revision | Resolved commit | Weights sha256 | Embedding (from) |", "|---|---|---|---|---|"]
    for model, r in records:
        warn = "" if r.get("pinned") else " ⚠ branch or tag, not a pinned commit"
        origin = r.get("embedding_from", "the card's protocol")
        lines.append(f"| {model} | {r.get('revision') or '-'}{warn} | {r.get('commit') or '-'} | "
                     f"`{r.get('files', {}).get('model.safetensors', '-')}` | {embedding_text(r)} ({origin}) |")
    return lines


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
    lines += compared_provenance(inputs)
    wiki, nli = inputs.train_manifests.get("wiki") or {}, inputs.train_manifests.get("nli") or {}
    lines += [""]
    if wiki:
        lines.append(f"Unsupervised data: {describe_data(wiki)}.")
        if wiki.get("blank_lines_skipped"):
            lines.append(blank_lines_note(wiki["sentences"], wiki["blank_lines_skipped"]))
    if nli:
        lines.append(f"Supervised data: {describe_data(nli)}.")
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


@dataclass(frozen=True)
class EncoderRow:
    """One model of the section "Korean sentence encoders under this protocol"."""

    label: str
    group: str  # one of ENCODER_GROUPS
    embedding: str
    sts_train: str
    metrics: dict


ENCODER_GROUPS = ("ours", "card's published checkpoint", "compared")
ENCODERS_TITLE = "Korean sentence encoders under this protocol"


def encoder_rows(inputs: ReportInputs) -> list[EncoderRow]:
    """Our variants, the card's published checkpoints and the `compare` models, by KorSTS-test AVG (best first)."""
    from pipeline.hubeval import embedding_text

    rows = []
    for r in inputs.variants:
        pooler = next(iter(r.trainings.values()), {}).get("config", {}).get("pooler", "cls")
        rows.append(EncoderRow(f"{label_of(r.name)} (`{r.name}`)", ENCODER_GROUPS[0],
                               embedding_text({"pooling": pooler}), "-", r.metrics))
    for variant, block in inputs.published.items():
        record = inputs.published_manifest.get("checkpoints", {}).get(variant)
        rows.append(EncoderRow(model_label(record) if record else PUBLISHED.get(variant, variant), ENCODER_GROUPS[1],
                               embedding_text({"pooling": "cls"}), "-", block))
    for model, block in inputs.compare.items():
        record = inputs.compare_manifest.get("models", {}).get(model, {})
        label = model if record.get("pinned", True) else (
            f"{model} ⚠ unpinned: {record.get('revision')} resolved to {str(record.get('commit'))[:12]}")
        rows.append(EncoderRow(label, ENCODER_GROUPS[2], embedding_text(record), record.get("sts_train") or "-", block))
    return sorted(rows, key=lambda row: -row.metrics["korsts_test"]["avg"])


def encoders_section(inputs: ReportInputs, figure: str | None = None) -> list[str]:
    """The comparison with other Korean sentence encoders (empty when params `compare` is)."""
    if not inputs.compare:
        return []
    rows = encoder_rows(inputs)
    max_len = inputs.compare_manifest.get("max_len")
    lines = [f"## {ENCODERS_TITLE}", "",
             "Every model below was scored by this pipeline's evaluation code on the same pairs, under the same "
             "protocol: the card's eight columns and AVG with 95% paired bootstrap intervals"
             + (f", inputs cut at {max_len} tokens" if max_len else "") + ". Each compared "
             "model is encoded as its own model card defines its embedding (the *Embedding* column; the stage's "
             "manifest says whether that came from the card or the repository's sentence-transformers files); our "
             "variants use their `pooler` param (the card's: [CLS]) and the card's checkpoints [CLS], as the card "
             "evaluated them. Rows are sorted by KorSTS-test AVG. A model "
             "with *STS training data* saw KorSTS (or KLUE-STS) training pairs, so its rows are not comparable with "
             "unsupervised ones.", ""]
    for bench, (_, title) in BENCHMARKS.items():
        lines += [f"### {title}", "",
                  "| Model | Kind | Embedding | STS training data | " + " | ".join(COLUMN_TITLES) + " |",
                  "|---|---|---|---|" + "---:|" * len(COLUMN_TITLES)]
        for row in rows:
            lines.append(_row(row.label, [row.group, row.embedding, row.sts_train]
                              + [value_cell(row.metrics[bench], k) for k in KEYS]))
        lines.append("")
    if figure:
        lines += [f"![AVG with 95% intervals per model, both benchmarks]({figure})", ""]
    return lines


def failed_models_section(inputs: ReportInputs) -> list[str]:
    """The hub checkpoints the published and compare stages could not score, each with its reason
    (their manifests' ``failed``); empty when every one was scored."""
    failed = [(f"published checkpoint `{f['variant']}`", f) for f in inputs.published_manifest.get("failed", [])]
    failed += [("compared encoder", f) for f in inputs.compare_manifest.get("failed", [])]
    if not failed:
        return []
    lines = ["## Models not scored", "",
             "These hub checkpoints could not be scored, so the tables above leave them out; the others were "
             "scored as usual. Once the cause is fixed, `dvc repro -f` the stage named.", ""]
    for what, f in failed:
        stage = "published" if what.startswith("published") else "compare"
        lines.append(f"- {what} `{f['id']}` at `{f.get('revision') or 'main'}` (stage `{stage}`): {f['reason']}")
    return lines + [""]


def draw_encoder_figure(inputs: ReportInputs, folder: Path, rel: str = "figures") -> str | None:
    """The comparison's figure (AVG with interval bars per model, both benchmarks); None without `compare`."""
    from pipeline import plots

    if not inputs.compare:
        return None
    rows = encoder_rows(inputs)
    def label(row: EncoderRow) -> str:  # plain text; † marks models trained on STS data
        return row.label.split(" ⚠")[0].replace("`", "") + (" †" if row.sts_train != "-" else "")

    panels = {title: [(label(row), row.group, row.metrics[bench]["avg"],
                       row.metrics[bench].get("avg_ci_low", row.metrics[bench]["avg"]),
                       row.metrics[bench].get("avg_ci_high", row.metrics[bench]["avg"])) for row in rows]
              for bench, (_, title) in BENCHMARKS.items()}
    title = ENCODERS_TITLE + (" († trained on STS data)" if any(r.sts_train != "-" for r in rows) else "")
    plots.ranked_avgs(folder / "encoders.png", title, panels,
                      [g for g in ENCODER_GROUPS if any(r.group == g for r in rows)])
    return f"{rel}/encoders.png"


def summary_lines(inputs: ReportInputs, improvements: dict) -> list[str]:
    """One row per variant: base model, data, recipe, AVG (the card's), and AVG trained − untrained."""
    if not inputs.variants:
        return []
    titles = [title for _, title in BENCHMARKS.values()]
    head = "| Variant | Base model | Training data | Recipe | " + " | ".join(f"{t} AVG (card)" for t in titles)
    rule = "|---|---|---|---|" + "---:|" * len(titles)
    if improvements:
        head += " | " + " | ".join(f"{t}: trained − untrained" for t in titles)
        rule += "---:|" * len(titles)
    lines = [head + " |", rule]
    for r in inputs.variants:
        cfg = shown_config(next(iter(r.trainings.values()), {}))
        manifest = inputs.train_manifests.get(cfg.get("data")) or {"kind": cfg.get("data")}
        data = DATA_NAMES.get(data_from(manifest), "-") if cfg.get("data") else "-"
        cells = []
        for bench in BENCHMARKS:
            card = card_values(bench, r.name)
            cells.append(f"{value_cell(r.metrics[bench], 'avg')} ({fmt(card['avg']) if card else '-'})")
        if improvements:
            cells += [difference_cell(improvements[r.name][b]["avg"]) if b in improvements.get(r.name, {}) else "-"
                      for b in BENCHMARKS]
        lines.append(f"| {label_of(r.name)} | {cfg.get('model', '-')} | {data} | {cfg.get('recipe', '-')} | "
                     + " | ".join(cells) + " |")
    return lines + [""]


def render(inputs: ReportInputs, figures: dict[str, dict[str, str]], comparisons: dict,
           improvements: dict | None = None, encoder_figure: str | None = None) -> str:
    """The report markdown; ``improvements`` is :func:`baseline_differences`, ``encoder_figure``
    :func:`draw_encoder_figure`."""
    improvements = improvements or {}
    lines = ["# SimCSE-KO reproduction", ""]
    if inputs.note:
        lines += [f"> {inputs.note}", ""]
    trained = ", ".join(f"`{r.name}`" for r in inputs.variants) or "none yet"
    lines += [f"Variants with results: {trained}. Model card being reproduced: "
              "`snumin44/simcse-ko-bert-unsupervised` and its three siblings (SimCSE on klue/bert-base and "
              "klue/roberta-base; unsupervised on a Korean Wikipedia corpus, supervised on KorNLI).", ""]
    lines += summary_lines(inputs, improvements)
    if improvements:
        lines += ["Trained − untrained: AVG of the variant minus AVG of its untrained base model on the same pairs, "
                  "[95% paired bootstrap interval]; bold when the interval excludes 0.", ""]
    lines += deviations_lines(inputs)
    bold = " **Bold** Δ: the card's value lies outside our interval." if any(
        card_row(r.name) for r in inputs.variants) else ""
    lines += ["Values are x100. `±` is the half-width of a 95% paired bootstrap interval "
              f"({inputs.bootstrap.resamples} resamples of the pairs, seed {inputs.bootstrap.seed}).{bold}", ""]
    for bench, (_, title) in BENCHMARKS.items():
        lines += [f"## {title}", ""] + benchmark_table(inputs, bench) + [""]
    lines += improvement_section(inputs, improvements)
    lines += extra_sections(inputs)
    lines += seed_section(inputs)
    lines += protocol_section(inputs)
    lines += published_section(inputs, comparisons)
    lines += encoders_section(inputs, encoder_figure)
    lines += failed_models_section(inputs)
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
        versus = " vs the card" if card_row(r.name) else ""
        plots.bars(folder / f"bars_{r.name}.png", f"The card's columns, ours{versus} — {label}", bar_panels)
        figs[f"AVG and the eight columns, ours{versus} — {label}"] = f"{rel}/bars_{r.name}.png"
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
    compared = inputs.compare_manifest.get("models", {})
    for model, metrics in inputs.compare.items():
        models[model] = {"metrics": metrics, "revision": compared.get(model, {}).get("commit"),
                         "seconds": seconds("compare", len(inputs.compare))}
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
