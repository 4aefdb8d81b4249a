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

from pipeline import yamlio
from pipeline.card import (CARD, CITATIONS, COLUMN_TITLES, CORPUS_SENTENCES, DATA, HARDWARE, PUBLISHED, card_row,
                           card_settings, row_label)
from pipeline.evaluate import BENCHMARKS, read_predictions
from pipeline.hub import models_manifest
from pipeline.metrics import KEYS, bootstrap_intervals
from pipeline.params import BootstrapConfig
from pipeline.provenance import is_local_record, model_alias, model_label, shown_config, source_label

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
    kind: str = "reproduction"  # param report_kind: one of KINDS
    overrides: dict[str, dict] = field(default_factory=dict)  # param variants: {variant: settings it overrides}

    @property
    def standin(self) -> str | None:
        """What a smoke or rehearsal run stands in with (figure titles, verdict); None for a reproduction."""
        return STANDIN[self.kind]

    def label(self, variant: str) -> str:
        """A variant's name in the report: the card's row label in a reproduction; the variant name in
        a stand-in run, whose tiny or English models must not be read as the card's."""
        return row_label(variant) if self.standin is None else variant


#: report_kind -> the phrase every title and figure of a stand-in run starts with (None: a reproduction)
STANDIN = {"reproduction": None, "smoke": "Smoke run (tiny random models)",
           "rehearsal": "CPU rehearsal (stand-in encoder)"}
TITLES = {"reproduction": "SimCSE-KO reproduction",
          "smoke": "Smoke run of the SimCSE-KO pipeline: tiny random models, not a reproduction",
          "rehearsal": "CPU rehearsal of the SimCSE-KO recipe: a stand-in encoder, not a reproduction"}
#: what a stand-in run is and is not (the verdict's first sentence)
STANDIN_VERDICT = {
    "smoke": "This smoke run trains tiny randomly initialised models on small generated data through the real "
             "pipeline; it shows that every stage runs and that training moves the scores, and says nothing "
             "about how close the card's models are, so none of its numbers is set beside the card's.",
    "rehearsal": "This CPU rehearsal runs the card's recipe with a small pretrained stand-in encoder on real "
                 "Korean data; it shows whether training helps and by how much, not the card's numbers, so none "
                 "of its numbers is set beside the card's.",
}
BOLD_NOTE = ("**Bold** (used with this one meaning throughout): a 95% interval that includes the value it is "
             "compared with (the card's value, or 0 for a difference), so no difference is detected.")


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
            note: str, bootstrap: BootstrapConfig, sections: dict[str, str] | None = None,
            kind: str = "reproduction", overrides: dict[str, dict] | None = None) -> ReportInputs:
    """Read every pipeline output the report needs; variants without results are skipped.

    ``kind`` is param report_kind; ``overrides`` the variants' settings that differ from params.yaml."""
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
    lock = yamlio.load(lock_path.read_text(encoding="utf-8")) if lock_path.is_file() else {}
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
        code=code, note=note, bootstrap=bootstrap, sections=dict(sections or {}), kind=kind,
        overrides=dict(overrides or {}),
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


def card_values(bench: str, variant: str) -> dict | None:
    """The card's published row for the row this variant reproduces (None if it reproduces none)."""
    row = card_row(variant)
    return CARD.get(bench, {}).get(row) if row else None


def card_for(inputs: ReportInputs, bench: str, variant: str) -> dict | None:
    """:func:`card_values`, except in a stand-in run, whose models are never set beside the card's."""
    return None if inputs.standin else card_values(bench, variant)


def marked(text: str, low: float, high: float, reference: float) -> str:
    """``text`` in bold when ``reference`` lies inside [low, high] (the report's one meaning of bold)."""
    return f"**{text}**" if low <= reference <= high else text


def interval_cell(block: dict, key: str) -> str:
    """``value [low, high]`` of a metrics block (just the value when it has no interval)."""
    if f"{key}_ci_low" not in block:
        return fmt(block[key])
    return f"{fmt(block[key])} [{fmt(block[key + '_ci_low'])}, {fmt(block[key + '_ci_high'])}]"


def details(summary: str, lines: list[str]) -> list[str]:
    """``lines`` folded into a ``<details>`` block (GitHub and editors render the markdown inside)."""
    return ["<details>", f"<summary>{summary}</summary>", ""] + lines + ["", "</details>", ""]


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

def card_delta_cell(block: dict, card: dict, key: str) -> str:
    """ours − card, bold when the card's value lies inside our interval."""
    diff = fmt(block[key] - card[key])
    if f"{key}_ci_low" not in block:
        return diff
    return marked(diff, block[f"{key}_ci_low"], block[f"{key}_ci_high"], card[key])


def benchmark_table(inputs: ReportInputs, bench: str) -> list[str]:
    """The card's eight columns and AVG: ours, the card's row and Δ (reproductions only), the published
    checkpoints and the untrained base models."""
    lines = _header()
    for result in inputs.variants:
        block = result.metrics[bench]
        label = inputs.label(result.name)
        lines.append(_row(f"{label} — ours", [value_cell(block, k) for k in KEYS]))
        card = card_for(inputs, bench, result.name)
        if card:
            lines.append(_row(f"{label} — card", [fmt(card[k]) for k in KEYS]))
            lines.append(_row(f"{label} — Δ ours − card", [card_delta_cell(block, card, k) for k in KEYS]))
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
    """A base model's short name in the report, defined once in the legend (:func:`legend_lines`)."""
    record = inputs.models_manifest.get(slug)
    return model_alias(record) if record else slug


def seed_section(inputs: ReportInputs) -> list[str]:
    multi = [r for r in inputs.variants if "seeds" in r.metrics]
    if not multi:
        return []
    body = ["Each variant trained once per seed; the tables above show the mean over seeds. Below: every "
            "seed, and the mean ± sample standard deviation.", ""]
    for bench, (_, title) in BENCHMARKS.items():
        body += [f"{title}:", ""] + _header()
        for result in multi:
            for seed, per in result.metrics["seeds"].items():
                body.append(_row(f"{inputs.label(result.name)} — {seed}", [fmt(per[bench][k]) for k in KEYS]))
            block = result.metrics[bench]
            body.append(_row(f"{inputs.label(result.name)} — mean ± std",
                             [f"{fmt(block[k])} ± {fmt(block[k + '_std'])}" for k in KEYS]))
        body.append("")
    return ["## Seed variance", ""] + details("Every seed, both benchmarks", body)


def protocol_section(inputs: ReportInputs) -> list[str]:
    lines = ["`card` reproduces the card's evaluation code: `,` `'` `\"` deleted from KorSTS sentences and "
             "KLUE-STS `labels.label` (one decimal). `clean` uses the sentences as published and "
             "`labels.real-label`. Both use [CLS] of the last hidden state, fp32, max length 64, "
             "Pearson/Spearman over the whole set. AVG under each:", "",
             "| Model | KorSTS test (card) | KorSTS test (clean) | Δ | KLUE-STS dev (card) | KLUE-STS dev (clean) | Δ |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [(f"{inputs.label(r.name)} — ours", r.metrics) for r in inputs.variants]
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
    return ["## Evaluation protocol: the card's quirks vs clean", ""] + details("AVG under each protocol", lines)


def difference_cell(c: dict) -> str:
    """``diff [low, high]``, bold when the interval includes 0 (no difference detected)."""
    return marked(f"{fmt(c['diff'])} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]", c["ci_low"], c["ci_high"], 0.0)


def difference_table(inputs: ReportInputs, comparisons: dict) -> list[str]:
    """One row per variant and benchmark: each column's difference with its paired interval."""
    lines = ["| Model | Benchmark | " + " | ".join(COLUMN_TITLES) + " |", "|---|---|" + "---:|" * len(KEYS)]
    for variant, by_bench in comparisons.items():
        for bench, cols in by_bench.items():
            lines.append(f"| {inputs.label(variant)} | {BENCHMARKS[bench][1]} | "
                         + " | ".join(difference_cell(cols[k]) for k in KEYS) + " |")
    return lines


def published_section(inputs: ReportInputs, comparisons: dict) -> list[str]:
    lines = ["## Ours vs the published checkpoints", ""]
    if not inputs.published:
        enabled = inputs.published_manifest.get("enabled")
        why = "`published.enabled` is false (no hub access)" if enabled is False else "not evaluated"
        return lines + [f"Published checkpoints: {why}.", ""]
    lines += ["Difference ours − published on the same pairs, with a 95% paired bootstrap interval. "
              "An interval that excludes 0 means our training differs from theirs; a published row that "
              "differs from the card means the evaluation differs.", ""]
    return lines + details("Ours − published, every column", difference_table(inputs, comparisons))


def improvement_section(inputs: ReportInputs, improvements: dict) -> list[str]:
    if not improvements:
        return []
    lines = ["## Trained − untrained", "",
             "Each variant minus its untrained base model (same evaluation, same pairs), with a 95% paired "
             "bootstrap interval.", ""]
    return lines + details("Trained − untrained, every column", difference_table(inputs, improvements))


def extra_sections(inputs: ReportInputs) -> list[str]:
    lines = []
    for title, text in inputs.sections.items():
        lines += [f"## {title}", "", str(text).strip(), ""]
    return lines


# --- what the run trained on, and how it differs from the card ------------------------

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


def executed(training: dict) -> dict:
    """What one seed's run executed: {precision, deterministic}. Records written before the train stage
    kept ``executed`` are derived from their device the way the training code decides it."""
    if "executed" in training:
        return training["executed"]
    import torch

    from pipeline.devices import executed_settings

    cfg = training.get("config", {})
    return executed_settings(cfg.get("precision", "fp16"), bool(cfg.get("deterministic", False)),
                             torch.device(training.get("device", "cuda")))


def run_config(training: dict) -> dict:
    """A training.json's config as this report shows it: the base model by its legend alias."""
    cfg = shown_config(training)
    if training.get("base_model") and "model" in cfg:
        cfg["model"] = model_alias(training["base_model"])
    return cfg


def _hardware(inputs: ReportInputs) -> str:
    first = next((t for r in inputs.variants for t in r.trainings.values()), {})
    env = first.get("environment", {})
    precision = executed(first)["precision"]
    if first.get("device") == "cpu":
        return f"CPU ({env.get('cpu')}, {env.get('cpu_count')} logical cores), {precision}"
    return f"{first.get('processes', 1)} × {env.get('gpu')}, {precision}" + (
        " autocast" if precision != "fp32" else "")


def deviations(inputs: ReportInputs) -> list[tuple[str, str, str]]:
    """(setting, the card's value, this run's value) for every card setting some variant does not keep,
    then the training data and the hardware (always listed)."""
    rows = []
    differing: dict[str, dict[str, list[str]]] = {}
    reference: dict[str, str] = {}
    for result in inputs.variants:
        cfg = run_config(next(iter(result.trainings.values()), {}))  # a local model by name, never its path
        for key, card_value in card_settings(result.name).items():
            if key in cfg and cfg[key] != card_value:
                reference.setdefault(key, str(card_value))
                differing.setdefault(key, {}).setdefault(str(cfg[key]), []).append(result.name)
    everyone = [r.name for r in inputs.variants]
    for key, by_value in differing.items():
        run = "; ".join(f"`{value}` ({'all variants' if names == everyone and len(names) > 1 else ', '.join(names)})"
                        for value, names in by_value.items())
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
    lines = ["| Setting | Card | This run |", "|---|---|---|"]
    lines += [f"| {key} | {card} | {run} |" for key, card, run in rows]
    return details("This run vs the card's settings (every card setting a variant changes, then the data and "
                   "hardware)", lines)


@dataclass(frozen=True)
class Figure:
    """One figure of a variant: a drawn PNG (``path``, relative to the report) or, when there is too
    little to plot, a ``sentence`` in its place."""

    caption: str
    path: str | None = None
    sentence: str | None = None


def figures_section(inputs: ReportInputs, figures: dict[str, list[Figure]]) -> list[str]:
    """Each variant's figures, in a folded block per variant."""
    lines = ["## Figures", ""]
    for variant, figs in figures.items():
        body = []
        for fig in figs:
            body += [f"![{fig.caption}]({fig.path})" if fig.path else f"{fig.caption}: {fig.sentence}", ""]
        lines += details(f"{inputs.label(variant)}: {len([f for f in figs if f.path])} figures", body)
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

    lines = ["", "Evaluated hub checkpoints:", "",
             "| Model | Requested revision | Resolved commit | Weights sha256 | Embedding (from) |", "|---|---|---|---|---|"]
    for model, r in records:
        warn = "" if r.get("pinned") else " ⚠ branch or tag, not a pinned commit"
        origin = r.get("embedding_from", "the card's protocol")
        lines.append(f"| {model} | {r.get('revision') or '-'}{warn} | {r.get('commit') or '-'} | "
                     f"`{r.get('files', {}).get('model.safetensors', '-')}` | {embedding_text(r)} ({origin}) |")
    return lines


def code_line(inputs: ReportInputs) -> str:
    """The provenance's sentence on the code: a commit of this repository (for a smoke or rehearsal
    project, the repository commit that built it, param ``report_code``)."""
    code = inputs.code
    if not code.get("commit"):
        return "Code: unknown commit (not a git checkout)."
    dirty = "with uncommitted changes" if code.get("dirty") else "clean tree"
    built = f", the commit that built this {inputs.kind} project" if inputs.standin else ""
    return f"Code: this repository's commit `{code['commit']}` ({dirty}; generated reports excluded{built})."


def setting_cell(training: dict, key: str) -> str:
    """One cell of :func:`settings_table`: the setting as it ran, the requested value beside it when the
    run executed something else (precision and determinism on a CPU)."""
    cfg = run_config(training)
    if key in ("precision", "deterministic"):
        ran, asked = executed(training)[key], cfg.get(key)
        return f"`{ran}`" if asked is None or ran == asked else f"`{ran}` (requested `{asked}`)"
    return f"`{cfg[key]}`" if key in cfg else "-"


def settings_table(inputs: ReportInputs) -> list[str]:
    """Variants as columns; rows: the settings a variant overrides in params.yaml, precision and
    determinism wherever the run executed something other than requested, and the selected step."""
    firsts = {r.name: next(iter(r.trainings.values()), {}) for r in inputs.variants}
    keys = sorted({k for r in inputs.variants for k in inputs.overrides.get(r.name, {})})
    for key in ("precision", "deterministic"):
        if any("(requested" in setting_cell(t, key) for t in firsts.values() if t):
            keys.append(key)
    lines = ["| Setting | " + " | ".join(f"`{r.name}`" for r in inputs.variants) + " |",
             "|---|" + "---|" * len(inputs.variants)]
    for key in keys:
        lines.append(_row(key, [setting_cell(firsts[r.name], key) if firsts[r.name] else "-"
                                for r in inputs.variants]))
    for label in sorted({s for r in inputs.variants for s in r.trainings}, key=lambda s: int(s.split("-")[1])):
        cells = []
        for r in inputs.variants:
            t = r.trainings.get(label)
            metric = (t or {}).get("selection_metric", "")
            best = (t or {}).get("best_dev", {}).get(metric.split(".")[-1])
            cells.append(f"{t.get('selected_step')} of {t.get('total_steps')}" + (f" ({fmt(best)})" if best is not None
                                                                                   else "") if t else "-")
        lines.append(_row(f"selected step, {label} (dev score)", cells))
    return lines


def environment_line(inputs: ReportInputs) -> str:
    """Hardware and library versions, once (they are the same for every variant of one run)."""
    envs = {json.dumps(t.get("environment", {}), sort_keys=True): t for r in inputs.variants
            for t in r.trainings.values()}
    parts = []
    for t in envs.values():
        env = t.get("environment", {})
        parts.append(f"{env.get('gpu') or env.get('cpu')}; {t.get('processes', 1)} process(es); torch "
                     f"{env.get('torch')}, CUDA {env.get('cuda') or '-'}, transformers {env.get('transformers')}, "
                     f"Python {env.get('python')}")
    return "Hardware and libraries: " + " / ".join(parts) + "." if parts else ""


def provenance_section(inputs: ReportInputs) -> list[str]:
    lines = ["## Provenance", "",
             f"{code_line(inputs)} Every number above is in [metrics.json](metrics.json); wall times per stage "
             "are in [timings.json](timings.json).", ""]
    if inputs.variants:
        selection = sorted({SELECTION_LABEL.get(m, m) for r in inputs.variants
                            for m in (t.get("selection_metric") for t in r.trainings.values()) if m})
        lines += ["What ran: the settings each variant changes from params.yaml, precision and determinism as "
                  "executed (the requested value beside it when it differs), and the step each seed kept "
                  f"(selection by {' or '.join(selection) or 'KorSTS dev'}; the untrained step 0 is never "
                  "eligible). Every other setting is params.yaml's.", ""]
        lines += settings_table(inputs) + ["", environment_line(inputs), ""]
    body = ["Input files:", "", "| Source | File | From | Revision | sha256 | Rows |", "|---|---|---|---|---|---:|"]
    for key in sorted(inputs.data_manifest):
        f = inputs.data_manifest[key]
        pin = "" if f.get("sha256_pinned") else " (recorded, not pinned)"
        body.append(f"| {key} | `{f['file']}` | {source_label(f['source'])} | {f.get('revision') or '-'} | "
                    f"`{f['sha256']}`{pin} | {f.get('rows', '-')} |")
    body += ["", "Base models:", "", "| Model | From | Requested revision | Resolved commit | Weights sha256 |",
             "|---|---|---|---|---|"]
    for slug in sorted(inputs.models_manifest):
        m = inputs.models_manifest[slug]
        warn = "" if m.get("pinned") else " ⚠ branch or tag, not a pinned commit"
        source = "local folder" if is_local_record(m) else m.get("source")
        body.append(f"| {_base_label(inputs, slug)} | {source} | {m.get('revision') or '-'}{warn} | "
                    f"{m.get('commit') or '-'} | `{m.get('files', {}).get('model.safetensors', '-')}` |")
    body += compared_provenance(inputs)
    wiki, nli = inputs.train_manifests.get("wiki") or {}, inputs.train_manifests.get("nli") or {}
    body += [""]
    if wiki:
        body.append(f"Unsupervised data: {describe_data(wiki)}.")
        if wiki.get("blank_lines_skipped"):
            body.append(blank_lines_note(wiki["sentences"], wiki["blank_lines_skipped"]))
    if nli:
        body.append(f"Supervised data: {describe_data(nli)}.")
    lines += details("Input files, base models and data", body)
    outs = [f"| {stage} | `{path}` | `{md5}` |" for r in inputs.variants
            for stage in (f"tokenize@{r.name}", f"train@{r.name}", f"evaluate@{r.name}")
            for path, md5 in _lock_outs(inputs, stage)]
    if outs:
        lines += details("DVC outputs (md5 from dvc.lock)", ["| DVC stage | Output | md5 |", "|---|---|---|"] + outs)
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
        label = inputs.label(r.name) if inputs.label(r.name) == r.name else f"{inputs.label(r.name)} (`{r.name}`)"
        rows.append(EncoderRow(label, ENCODER_GROUPS[0],
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
    if figure:
        lines += [f"![AVG with 95% intervals per model, both benchmarks]({figure})", ""]
    for bench, (_, title) in BENCHMARKS.items():
        table = ["| Model | Kind | Embedding | STS training data | " + " | ".join(COLUMN_TITLES) + " |",
                 "|---|---|---|---|" + "---:|" * len(COLUMN_TITLES)]
        for row in rows:
            table.append(_row(row.label, [row.group, row.embedding, row.sts_train]
                              + [value_cell(row.metrics[bench], k) for k in KEYS]))
        lines += details(f"{title}: every model, every column", table)
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
    if inputs.standin:
        title = f"{inputs.standin}: {title}"
    plots.ranked_avgs(folder / "encoders.png", title, panels,
                      [g for g in ENCODER_GROUPS if any(r.group == g for r in rows)])
    return f"{rel}/encoders.png"


# --- the opening: verdict, headline table, legend -------------------------------------

HEADLINE_KEYS = ("avg", "cosine_spearman")
HEADLINE_TITLES = {"avg": "AVG", "cosine_spearman": "Cosine Spearman"}
DOT_KEYS = ("dot_pearson", "dot_spearman")


def signed(x: float) -> str:
    return f"{x:+.2f}"


def base_alias(inputs: ReportInputs, result: VariantResult) -> str:
    """The legend alias of the base model a variant was trained from."""
    first = next(iter(result.trainings.values()), {})
    if first.get("base_model"):
        return model_alias(first["base_model"])
    slug = base_model_slug(inputs, result)
    return _base_label(inputs, slug) if slug else str(first.get("config", {}).get("model", "-"))


def untrained_block(inputs: ReportInputs, result: VariantResult) -> dict | None:
    """The untrained base model's metrics of a variant (None without a baseline)."""
    slug = base_model_slug(inputs, result)
    return inputs.baseline.get(slug) if slug else None


def reference_cell(inputs: ReportInputs, improvements: dict, result: VariantResult, bench: str, key: str) -> str:
    """Headline cell beside ours: the card's value (Δ ours − card) in a reproduction; in a stand-in run
    the untrained base model's value (Δ trained − untrained [95% paired interval])."""
    if inputs.standin:
        base = untrained_block(inputs, result)
        diff = improvements.get(result.name, {}).get(bench, {}).get(key)
        if base is None:
            return "-"
        return fmt(base[bench][key]) + (f" ({difference_cell(diff)})" if diff else "")
    card = card_for(inputs, bench, result.name)
    return f"{fmt(card[key])} ({card_delta_cell(result.metrics[bench], card, key)})" if card else "-"


def headline_table(inputs: ReportInputs, improvements: dict) -> list[str]:
    """The report's first table: per variant and benchmark, AVG and cosine Spearman with intervals,
    beside the card (reproduction) or the untrained model (stand-in run). Seven columns."""
    if not inputs.variants:
        return []
    ours, ref = ("trained", "untrained (Δ [95% CI])") if inputs.standin else ("ours", "card (Δ)")
    head = ["Variant", "Base model", "Benchmark"]
    for key in HEADLINE_KEYS:
        head += [f"{HEADLINE_TITLES[key]}: {ours} [95% CI]", f"{HEADLINE_TITLES[key]}: {ref}"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * 2 * len(HEADLINE_KEYS)]
    for r in inputs.variants:
        for bench, (_, title) in BENCHMARKS.items():
            cells = [base_alias(inputs, r), title]
            for key in HEADLINE_KEYS:
                cells += [interval_cell(r.metrics[bench], key), reference_cell(inputs, improvements, r, bench, key)]
            lines.append(_row(inputs.label(r.name), cells))
    return lines + [""]


def _card_clause(inputs: ReportInputs, result: VariantResult, bench: str) -> str | None:
    block, card = result.metrics[bench], card_for(inputs, bench, result.name)
    if not card:
        return None
    where = ""
    if "avg_ci_low" in block:
        inside = block["avg_ci_low"] <= card["avg"] <= block["avg_ci_high"]
        where = f", the card's value {'inside' if inside else 'outside'} our 95% interval"
    return (f"{inputs.label(result.name)} AVG {fmt(block['avg'])} against the card's {fmt(card['avg'])} "
            f"(Δ {signed(block['avg'] - card['avg'])}{where})")


def _gain_clause(inputs: ReportInputs, improvements: dict, result: VariantResult, bench: str) -> str:
    diff = improvements.get(result.name, {}).get(bench)
    if not diff:
        return f"`{result.name}` AVG {interval_cell(result.metrics[bench], 'avg')} (no untrained baseline)"
    return (f"`{result.name}` {signed(diff['avg']['diff'])} [{fmt(diff['avg']['ci_low'])}, "
            f"{fmt(diff['avg']['ci_high'])}] ({signed(dot_gain(diff))}, {signed(diff['cosine_spearman']['diff'])})")


def dot_gain(diff: dict) -> float:
    """Mean trained − untrained of the two dot-product columns (they move most: unnormalised embeddings)."""
    return float(np.mean([diff[k]["diff"] for k in DOT_KEYS]))


def _carried_by_dot(inputs: ReportInputs, improvements: dict, bench: str) -> str:
    diffs = [improvements[r.name][bench] for r in inputs.variants if bench in improvements.get(r.name, {})]
    if diffs and all(dot_gain(d) > d["avg"]["diff"] > d["cosine_spearman"]["diff"] for d in diffs):
        return "; in every variant the dot-product columns gain more than AVG and cosine Spearman less"
    return ""


def verdict_lines(inputs: ReportInputs, improvements: dict) -> list[str]:
    """One sentence per benchmark: how close to the card (reproduction), or what training changed and
    which columns carry that change (stand-in run, after a sentence on what the run is and is not)."""
    if not inputs.variants:
        return ["No variant has results yet.", ""]
    lines = [STANDIN_VERDICT[inputs.kind], ""] if inputs.standin else []
    for bench, (_, title) in BENCHMARKS.items():
        if inputs.standin:
            parts = [_gain_clause(inputs, improvements, r, bench) for r in inputs.variants]
            lead = ("AVG trained − untrained [95% CI] (mean of the two dot-product columns, cosine Spearman)"
                    + _carried_by_dot(inputs, improvements, bench))
        else:
            parts = [c for c in (_card_clause(inputs, r, bench) for r in inputs.variants) if c]
            lead = "ours against the card"
        text = "; ".join(parts) if parts else "no variant reproduces one of the card's rows"
        lines.append(f"- {title}, {lead}: {text}.")
    return lines + [""]


def legend_lines(inputs: ReportInputs) -> list[str]:
    """The models' short names, each defined once with its weights hash or commit."""
    entries = []
    for slug in sorted(inputs.models_manifest):
        record = inputs.models_manifest[slug]
        at = f" at commit `{record['commit'][:12]}`" if record.get("commit") and not is_local_record(record) else ""
        entries.append(f"`{model_alias(record)}` = {model_label(record)}{at}")
    if not entries:
        return []
    return ["Base models (their names in every table below): " + "; ".join(entries) + ".", ""]


def opening(inputs: ReportInputs, improvements: dict) -> list[str]:
    """Title, note, verdict, headline table, what the numbers and bold mean, the legend."""
    lines = [f"# {TITLES[inputs.kind]}", ""]
    if inputs.note:
        lines += [f"> {inputs.note}", ""]
    lines += verdict_lines(inputs, improvements) + headline_table(inputs, improvements)
    ref = ("Δ: trained − untrained on the same pairs" if inputs.standin else "Δ: ours − the card's value")
    lines += [f"Values are x100; [low, high] is a 95% paired bootstrap interval ({inputs.bootstrap.resamples} "
              f"resamples of the pairs, seed {inputs.bootstrap.seed}); `±` in the long tables is its half-width. "
              f"{ref}. {BOLD_NOTE}", ""]
    lines += legend_lines(inputs)
    lines += ["Model card: `snumin44/simcse-ko-bert-unsupervised` and its three siblings (SimCSE on klue/bert-base "
              "and klue/roberta-base; unsupervised on a Korean Wikipedia corpus, supervised on KorNLI).", ""]
    return lines + deviations_lines(inputs)


def render(inputs: ReportInputs, figures: dict[str, list[Figure]], comparisons: dict,
           improvements: dict | None = None, encoder_figure: str | None = None) -> str:
    """The report markdown; ``figures`` is :func:`draw_figures`, ``improvements``
    :func:`baseline_differences`, ``encoder_figure`` :func:`draw_encoder_figure`."""
    improvements = improvements or {}
    lines = opening(inputs, improvements)
    for bench, (_, title) in BENCHMARKS.items():
        lines += [f"## {title}", ""] + benchmark_table(inputs, bench) + [""]
    lines += improvement_section(inputs, improvements)
    lines += extra_sections(inputs)
    lines += seed_section(inputs)
    lines += protocol_section(inputs)
    lines += published_section(inputs, comparisons)
    # the section on models that could not be evaluated (compare/published manifests' "failed") goes here
    lines += encoders_section(inputs, encoder_figure)
    lines += failed_models_section(inputs)
    lines += figures_section(inputs, figures)
    lines += provenance_section(inputs)
    lines += ["## References", ""] + [f"- {c}" for c in CITATIONS] + [""]
    return "\n".join(lines)


# --- figures --------------------------------------------------------------------------

#: fewer dev evaluations than this (step 0 included) get a sentence, not a plot
MIN_DEV_POINTS = 3


def figure_title(inputs: ReportInputs, text: str) -> str:
    """A figure's title; a stand-in run's says so first, so no figure can pass for the card's."""
    return f"{inputs.standin}: {text}" if inputs.standin else text


def dev_points(history: list[dict], selected_step: int, metric: str) -> tuple[dict | None, list[dict], dict | None]:
    """Split one seed's dev history: (the untrained step-0 evaluation or None, the evaluations during
    training, the selected evaluation or None when its step was not evaluated).

    Raises:
        ValueError: the record selects step 0, the untrained model, which is never eligible.
    """
    if selected_step == 0:
        raise ValueError("the record selects step 0 (the untrained model), which is never eligible")
    untrained = next((h for h in history if h["step"] == 0), None)
    during = [h for h in history if h["step"] != 0]
    return untrained, during, next((h for h in during if h["step"] == selected_step), None)


def dev_figure(inputs: ReportInputs, r: VariantResult, folder: Path, rel: str) -> Figure | None:
    """The KorSTS dev curve of a variant (step 0 = untrained, the selected step marked), or a sentence
    when there are fewer than :data:`MIN_DEV_POINTS` evaluations."""
    from pipeline import plots

    histories = {s: t["dev_history"] for s, t in r.trainings.items() if t.get("dev_history")}
    if not histories:
        return None
    metric = next(iter(r.trainings.values()))["selection_metric"].split(".")[-1]
    name = metric.replace("_", " ")
    label = inputs.label(r.name)
    caption = f"KorSTS dev {name} per evaluation (step 0: untrained), selected step marked — {label}"
    runs = {s: dev_points(h, r.trainings[s]["selected_step"], metric) for s, h in histories.items()}
    if max(len(h) for h in histories.values()) < MIN_DEV_POINTS:
        said = "; ".join(f"{s}: " + ", ".join(f"step {h['step']} {fmt(h[metric])}" for h in histories[s])
                         + f" (step {r.trainings[s]['selected_step']} selected)" for s in histories)
        return Figure(caption, sentence=f"too few evaluations to plot; KorSTS dev {name} at {said}.")
    plots.dev_curve(folder / f"dev_{r.name}.png", figure_title(inputs, f"KorSTS dev during training — {label}"),
                    runs, metric)
    return Figure(caption, f"{rel}/dev_{r.name}.png")


def interval_figure(inputs: ReportInputs, r: VariantResult, folder: Path, rel: str) -> Figure:
    """Untrained → trained (→ card in a reproduction), AVG and cosine Spearman with 95% intervals."""
    from pipeline import plots

    base = untrained_block(inputs, r)
    panels, with_card = {}, False
    for bench, (_, title) in BENCHMARKS.items():
        card = card_for(inputs, bench, r.name)
        with_card |= card is not None
        rows = {}
        for key in HEADLINE_KEYS:
            points = [("untrained", base[bench])] if base else []
            points += [("trained", r.metrics[bench])] + ([("card", {key: card[key]})] if card else [])
            rows[HEADLINE_TITLES[key]] = [(name, b[key], b.get(f"{key}_ci_low", b[key]), b.get(f"{key}_ci_high", b[key]))
                                          for name, b in points]
        panels[title] = rows
    steps = " → ".join((["untrained"] if base else []) + ["trained"] + (["card"] if with_card else []))
    label = inputs.label(r.name)
    plots.intervals(folder / f"intervals_{r.name}.png", figure_title(inputs, f"{steps} — {label}"), panels)
    return Figure(f"{steps}, AVG and cosine Spearman with 95% intervals — {label}", f"{rel}/intervals_{r.name}.png")


def draw_figures(inputs: ReportInputs, folder: Path, rel: str = "figures") -> dict[str, list[Figure]]:
    """Draw every figure into ``folder``; return {variant: [Figure]}."""
    from pipeline import plots

    figures: dict[str, list[Figure]] = {}
    for r in inputs.variants:
        label = inputs.label(r.name)
        figs = [interval_figure(inputs, r, folder, rel)]
        if any(r.curves.values()):
            plots.training_curves(folder / f"training_{r.name}.png",
                                  figure_title(inputs, f"Training loss and learning rate — {label}"), r.curves)
            figs.append(Figure(f"Training loss and learning rate per step — {label}", f"{rel}/training_{r.name}.png"))
        dev = dev_figure(inputs, r, folder, rel)
        if dev:
            figs.append(dev)
        first = next(iter(r.predictions.values()), {})
        panels = {}
        for bench, path in first.items():
            if path.is_file():
                gold, scores = read_predictions(path)
                panels[BENCHMARKS[bench][1]] = (gold, scores["cosine"])
        if panels:
            seed = next(iter(r.predictions))
            plots.scatter(folder / f"scatter_{r.name}.png",
                          figure_title(inputs, f"Gold score vs predicted cosine — {label} ({seed})"), panels)
            figs.append(Figure(f"Gold score vs predicted cosine similarity, r and ρ — {label}",
                               f"{rel}/scatter_{r.name}.png"))
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
