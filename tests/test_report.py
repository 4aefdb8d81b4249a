"""The report renderer on synthetic results: seeds, published checkpoints, paired differences."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline import report
from pipeline.card import CARD, card_order, card_row, row_label
from pipeline.data import StsSet
from pipeline.evaluate import summarize, write_predictions
from pipeline.metrics import COLUMNS, KEYS, pair_scores
from pipeline.params import BootstrapConfig
from tests.conftest import parse_tables


def test_card_avg_is_the_mean_of_the_eight_columns():
    for bench in CARD.values():
        for row in bench.values():
            assert row["avg"] == pytest.approx(np.mean([row[c] for c in COLUMNS]), abs=0.006)


def test_card_rows_and_extensions():
    assert card_row("bert-unsup") == "bert-unsup" and card_row("bert-unsup-simcse") == "bert-unsup"
    assert card_row("roberta-sup-seedless") == "roberta-sup" and card_row("mine") is None
    assert row_label("bert-unsup-simcse") == "SimCSE-BERT-KO (unsup) · simcse"
    assert card_order(["roberta-sup", "x", "bert-unsup-simcse", "bert-sup", "bert-unsup"]) == \
        ["bert-unsup", "bert-unsup-simcse", "bert-sup", "roberta-sup", "x"]


def _sets(n=120, seed=0):
    rng = np.random.default_rng(seed)
    gold = np.round(rng.uniform(0, 5, n), 1)
    sts = StsSet("korsts_test", [f"a{i}" for i in range(n)], [f"b{i}" for i in range(n)], gold)
    klue = StsSet("klue_dev", sts.sentence1, sts.sentence2, gold[::-1].copy())
    return {"card": {"korsts_test": sts, "klue_dev": klue}, "clean": {"korsts_test": sts, "klue_dev": klue}}


def _scores(sets, noise, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for proto, by in sets.items():
        out[proto] = {}
        for bench, sts in by.items():
            base = np.stack([sts.scores, np.ones_like(sts.scores)], axis=1)
            out[proto][bench] = pair_scores(base + rng.normal(scale=noise, size=base.shape),
                                            np.tile([5.0, 1.0], (len(sts), 1)))
    return out


@pytest.fixture
def inputs(tmp_path):
    sets = _sets()
    boot = BootstrapConfig(resamples=200, seed=1)
    runs = [_scores(sets, 0.5, 1), _scores(sets, 0.6, 2)]
    ours = summarize(sets, runs, protocol="card", bootstrap=boot, run_labels=["seed-1", "seed-2"])
    published_scores = _scores(sets, 2.0, 3)
    published = summarize(sets, [published_scores], protocol="card", bootstrap=boot)
    for label, run in zip(("seed-1", "seed-2"), runs):
        write_predictions(tmp_path / "eval" / "bert-unsup", label, sets["card"], run["card"])
    write_predictions(tmp_path / "eval" / "published", "bert-unsup", sets["card"], published_scores["card"])
    variant = report.VariantResult(
        "bert-unsup", ours,
        trainings={s: {"config": {"model": "m", "data": "wiki"}, "selected_step": 3, "total_steps": 4,
                       "selection_metric": "korsts_dev.cosine_pearson", "best_dev": {"cosine_pearson": 50.0}}
                   for s in ("seed-1", "seed-2")},
        predictions={s: {b: tmp_path / "eval" / "bert-unsup" / f"{b}.{s}.tsv" for b in ("korsts_test", "klue_dev")}
                     for s in ("seed-1", "seed-2")},
        curves={})
    return report.ReportInputs(variants=[variant], published={"bert-unsup": published},
                               published_manifest={"enabled": True, "checkpoints": {"bert-unsup": {"model": "p/m"}}},
                               published_dir=tmp_path / "eval" / "published", bootstrap=boot,
                               code={"commit": "abc", "dirty": False})


def test_seed_section_and_mean(inputs):
    metrics = inputs.variants[0].metrics
    assert set(metrics["seeds"]) == {"seed-1", "seed-2"}
    for key in KEYS:
        per = [metrics["seeds"][s]["korsts_test"][key] for s in ("seed-1", "seed-2")]
        assert metrics["korsts_test"][key] == pytest.approx(np.mean(per))
        assert metrics["korsts_test"][f"{key}_std"] == pytest.approx(np.std(per, ddof=1))
    text = report.render(inputs, {}, report.published_differences(inputs))
    assert "## Seed variance" in text
    assert f"| SimCSE-BERT-KO (unsup) — seed-2 | {report.fmt(metrics['seeds']['seed-2']['klue_dev']['avg'])} |" in text
    mean_std = f"{report.fmt(metrics['korsts_test']['avg'])} ± {report.fmt(metrics['korsts_test']['avg_std'])}"
    assert f"| SimCSE-BERT-KO (unsup) — mean ± std | {mean_std} |" in text


def test_published_rows_and_paired_differences(inputs):
    diffs = report.published_differences(inputs)
    ours, pub = inputs.variants[0].metrics, inputs.published["bert-unsup"]
    for bench in ("korsts_test", "klue_dev"):
        for key in KEYS:
            d = diffs["bert-unsup"][bench][key]
            assert d["diff"] == pytest.approx(ours[bench][key] - pub[bench][key])
            assert d["ci_low"] <= d["diff"] <= d["ci_high"]
    # less noise than the "published" model: ours is clearly better
    assert diffs["bert-unsup"]["korsts_test"]["avg"]["ci_low"] > 0
    text = report.render(inputs, {}, diffs)
    assert "| p/m — published checkpoint, our evaluation |" in text
    d = diffs["bert-unsup"]["korsts_test"]["avg"]
    # the interval excludes 0: a difference, so not bold (bold: no difference detected)
    assert f"| {report.fmt(d['diff'])} [{report.fmt(d['ci_low'])}, {report.fmt(d['ci_high'])}] |" in text


def test_render_is_deterministic(inputs):
    diffs = report.published_differences(inputs)
    assert report.render(inputs, {}, diffs) == report.render(inputs, {}, report.published_differences(inputs))


@pytest.fixture
def with_baseline(inputs, tmp_path):
    """The inputs plus an untrained base model `m` (noisier than the trained seeds) and training data."""
    sets = _sets()
    boot = inputs.bootstrap
    scores = _scores(sets, 1.5, 4)
    inputs.baseline = {"m": summarize(sets, [scores], protocol="card", bootstrap=boot)}
    write_predictions(tmp_path / "eval" / "baseline", "m", sets["card"], scores["card"])
    inputs.baseline_dir = tmp_path / "eval" / "baseline"
    inputs.models_manifest = {"m": {"model": "m"}}
    inputs.train_manifests = {"wiki": {"kind": "wiki", "from": "korsts_xnli", "sentences_read": 40, "distinct": 30,
                                       "seed": 42, "sentences": 20, "max_sentences": 20}}
    return inputs


def test_trained_minus_untrained_is_a_paired_difference(with_baseline):
    diffs = report.baseline_differences(with_baseline)
    ours, base = with_baseline.variants[0].metrics, with_baseline.baseline["m"]
    for bench in ("korsts_test", "klue_dev"):
        for key in KEYS:
            d = diffs["bert-unsup"][bench][key]
            assert d["diff"] == pytest.approx(ours[bench][key] - base[bench][key])
            assert d["ci_low"] <= d["diff"] <= d["ci_high"]
    assert diffs["bert-unsup"]["korsts_test"]["avg"]["ci_low"] > 0  # less noise than the untrained model
    text = report.render(with_baseline, {}, {}, diffs)
    d = diffs["bert-unsup"]["korsts_test"]["avg"]
    assert "## Trained − untrained" in text
    assert f"| {report.fmt(d['diff'])} [{report.fmt(d['ci_low'])}, {report.fmt(d['ci_high'])}] |" in text
    assert report.combined_metrics(with_baseline, {}, diffs)["trained_minus_untrained"] == diffs


def test_header_lists_every_deviation_from_the_card(with_baseline):
    # the paper's clipping is a deviation from the card's code (no clipping); no warmup and no hard-negative
    # weight are what the card's code did, so they are not listed
    cfg = {"model": "m", "data": "wiki", "batch_size": 64, "lr": 5e-5, "recipe": "card", "seed": 42,
           "precision": "bf16", "max_grad_norm": 1.0, "warmup_steps": 0, "hard_negative_weight": 0.0}
    for training in with_baseline.variants[0].trainings.values():
        training.update({"config": cfg, "device": "cpu", "environment": {"cpu": "a CPU", "cpu_count": 2}})
    rows = report.deviations(with_baseline)
    assert rows == [
        ("model", "`klue/bert-base`", "`m` (bert-unsup)"),
        ("batch_size", "`256`", "`64` (bert-unsup)"),
        ("max_grad_norm", "`0.0`", "`1.0` (bert-unsup)"),
        ("unsupervised data", "Korean Wiki Text 1M (korean_wiki_1m.txt)",
         "20 sentences: the 30 distinct sentences of KorSTS train and XNLI-ko dev (40 read), shuffled with seed 42; "
         "the first 20 kept (`corpus.max_sentences`) (0.00% of the card's 1M)"),
        ("hardware", "1 A100 GPU, fp16 autocast", "CPU (a CPU, 2 logical cores), fp32"),
    ]
    text = report.render(with_baseline, {}, {})
    assert "| batch_size | `256` | `64` (bert-unsup) |" in text.split("\n## ")[0]  # in the header


def test_extra_sections_are_rendered_in_order(inputs):
    inputs.sections = {"First": "one\n", "Second": "two"}
    text = report.render(inputs, {}, {})
    assert "## First\n\none\n\n## Second\n\ntwo\n" in text


def test_the_provenance_says_how_many_blank_corpus_lines_the_card_trained_on(inputs):
    """A corpus with blank lines: the rendered report's provenance names the count and that the card's
    reader trained on them (our count + theirs); without blank lines, no such sentence."""
    wiki = {"kind": "wiki", "from": "wiki", "sentences": 999_990, "blank_lines_skipped": 10}
    inputs.train_manifests = {"wiki": wiki}
    text = "\n".join(report.provenance_section(inputs))
    assert report.blank_lines_note(999_990, 10) in text
    assert "10 blank lines of the corpus skipped here" in text and "trained on 1000000 rows" in text
    inputs.train_manifests = {"wiki": {**wiki, "blank_lines_skipped": 0}}
    assert "blank lines of the corpus skipped" not in "\n".join(report.provenance_section(inputs))


# --- the opening: verdict, headline, bold, details, stand-ins -------------------------------------------

def _cell_numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", cell)]


def test_headline_table_equals_the_metrics_and_the_card(inputs, tmp_path):
    """The first table: per benchmark, ours [95% CI] and the card's value (Δ) for AVG and cosine Spearman,
    every number equal to metrics.json (written as the stage writes it), bold exactly when the card's
    value lies inside our interval."""
    import json

    from pipeline.atomic import write_json
    from tests.conftest import headline_rows

    write_json(tmp_path / "metrics.json", report.combined_metrics(inputs, {}))
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))["variants"]["bert-unsup"]
    text = report.render(inputs, {}, {})
    assert text.startswith("# SimCSE-KO reproduction\n")
    header, *rows = headline_rows(text)
    assert len(header) <= 8
    assert header == ["Variant", "Base model", "Benchmark", "AVG: ours [95% CI]", "AVG: card (Δ)",
                      "Cosine Spearman: ours [95% CI]", "Cosine Spearman: card (Δ)"]
    assert [r[:3] for r in rows] == [["SimCSE-BERT-KO (unsup)", "m", "KorSTS test"],
                                     ["SimCSE-BERT-KO (unsup)", "m", "KLUE-STS dev"]]
    for row, bench in zip(rows, ("korsts_test", "klue_dev")):
        block, card = metrics[bench], CARD[bench]["bert-unsup"]
        for key, ours, theirs in (("avg", row[3], row[4]), ("cosine_spearman", row[5], row[6])):
            assert _cell_numbers(ours) == [round(block[key], 2), round(block[f"{key}_ci_low"], 2),
                                           round(block[f"{key}_ci_high"], 2)]
            assert _cell_numbers(theirs) == [card[key], round(block[key] - card[key], 2)]
            assert ("**" in theirs) == (block[f"{key}_ci_low"] <= card[key] <= block[f"{key}_ci_high"])
    # one sentence per benchmark, naming our AVG and the card's
    for bench, title in (("korsts_test", "KorSTS test"), ("klue_dev", "KLUE-STS dev")):
        [sentence] = [line for line in text.splitlines() if line.startswith(f"- {title}, ")]
        assert f"AVG {report.fmt(metrics[bench]['avg'])} against the card's {report.fmt(CARD[bench]['bert-unsup']['avg'])}" \
            in sentence


def test_bold_has_one_meaning_stated_once(with_baseline):
    """Bold is stated once and means one thing: the interval includes the value compared with (0 for a
    difference; the card's value for Δ ours − card)."""
    improvements = report.baseline_differences(with_baseline)
    text = report.render(with_baseline, {}, report.published_differences(with_baseline), improvements)
    assert text.count(report.BOLD_NOTE) == 1 and text.count("**Bold**") == 1
    differences = text.split("## Trained − untrained")[1].split("\n## ")[0]
    cells = re.findall(r"\| (\*\*)?(-?\d+\.\d+) \[(-?\d+\.\d+), (-?\d+\.\d+)\]", differences)
    assert len(cells) == 2 * len(KEYS)
    for bold, _, low, high in cells:
        assert (bold == "**") == (float(low) <= 0 <= float(high))
    metrics = with_baseline.variants[0].metrics
    for bench, title in (("korsts_test", "KorSTS test"), ("klue_dev", "KLUE-STS dev")):
        [row] = [r for r in parse_tables(text)[title] if r[0].endswith("— Δ ours − card")]
        card = CARD[bench]["bert-unsup"]
        for key, cell in zip(KEYS, row[1:]):
            inside = metrics[bench][f"{key}_ci_low"] <= card[key] <= metrics[bench][f"{key}_ci_high"]
            assert cell.startswith("**") == inside


def test_details_blocks_fold_the_long_tables_and_provenance(with_baseline):
    improvements = report.baseline_differences(with_baseline)
    text = report.render(with_baseline, {}, {}, improvements)
    assert text.count("<details>") == text.count("</details>") >= 4
    assert text.index("<details>") > text.index("| Variant | Base model |")  # the headline is never folded
    provenance = text.split("## Provenance")[1]
    assert provenance.index("<details>") < provenance.index("| Source | File |")
    trained = text.split("## Trained − untrained")[1].split("\n## ")[0]
    assert trained.index("<details>") < trained.index("| Model | Benchmark |")


def test_a_standin_run_says_what_it_is_and_never_sets_itself_beside_the_card(with_baseline, tmp_path, monkeypatch):
    """Smoke and rehearsal: the title, the verdict and every figure title name the stand-in; no card rows,
    no Δ ours − card; the headline compares with the untrained model instead (Δ = the paired difference)."""
    from pipeline import plots
    from tests.conftest import headline_rows

    with_baseline.kind = "smoke"
    improvements = report.baseline_differences(with_baseline)
    text = report.render(with_baseline, {}, {}, improvements)
    assert text.startswith("# Smoke run of the SimCSE-KO pipeline: tiny random models, not a reproduction\n")
    assert report.STANDIN_VERDICT["smoke"] in text.split("\n## ")[0]
    assert "Δ ours − card" not in text and "— card |" not in text and "SimCSE-BERT-KO" not in text
    # the verdict splits each AVG gain into the dot-product columns' mean and cosine Spearman
    d = improvements["bert-unsup"]["korsts_test"]
    dot = np.mean([d["dot_pearson"]["diff"], d["dot_spearman"]["diff"]])
    [sentence] = [line for line in text.splitlines() if line.startswith("- KorSTS test, ")]
    assert (f"`bert-unsup` {d['avg']['diff']:+.2f} [{d['avg']['ci_low']:.2f}, {d['avg']['ci_high']:.2f}] "
            f"({dot:+.2f}, {d['cosine_spearman']['diff']:+.2f})") in sentence
    header, *rows = headline_rows(text)
    assert header[4] == "AVG: untrained (Δ [95% CI])"
    base = with_baseline.baseline["m"]
    for row, bench in zip(rows, ("korsts_test", "klue_dev")):
        assert row[0] == "bert-unsup"
        d = improvements["bert-unsup"][bench]["avg"]
        assert _cell_numbers(row[4]) == [round(base[bench]["avg"], 2), round(d["diff"], 2), round(d["ci_low"], 2),
                                         round(d["ci_high"], 2)]
    titles = []
    for name in ("training_curves", "dev_curve", "scatter", "intervals"):
        monkeypatch.setattr(plots, name, lambda path, title, *a, **k: titles.append(title))
    for training in with_baseline.variants[0].trainings.values():
        training["dev_history"] = [{"step": s, "cosine_pearson": 40.0 + s, "cosine_spearman": 41.0 + s}
                                   for s in (0, 1, 2, 3)]
    with_baseline.variants[0].curves = {"seed-1": {"loss": [(1, 1.0), (2, 0.5)]}}
    report.draw_figures(with_baseline, tmp_path)
    assert len(titles) == 4 and all(t.startswith("Smoke run (tiny random models): ") for t in titles)


def test_legend_defines_each_long_model_name_once(with_baseline):
    with_baseline.models_manifest = {"local--tiny": {"model": "sources/tiny", "kind": "local",
                                                     "files": {"model.safetensors": "ab" * 32}}}
    with_baseline.baseline = {"local--tiny": with_baseline.baseline["m"]}
    text = report.render(with_baseline, {}, {})
    assert text.count("tiny (local folder, weights sha256 abababababab)") == 1
    assert "| tiny — untrained baseline |" in text


# --- figures: the dev curve's step 0, too few points, the learning rate ---------------------------------

HISTORY = [{"step": 0, "cosine_pearson": 90.0, "cosine_spearman": 91.0},  # untrained, and the best score
           {"step": 20, "cosine_pearson": 50.0, "cosine_spearman": 52.0},
           {"step": 40, "cosine_pearson": 60.0, "cosine_spearman": 59.0}]


def test_step_zero_is_plotted_but_never_the_selected_point(inputs, tmp_path, monkeypatch):
    from pipeline import plots

    untrained, during, selected = report.dev_points(HISTORY, 40, "cosine_pearson")
    assert untrained == HISTORY[0] and during == HISTORY[1:] and selected == HISTORY[2]
    with pytest.raises(ValueError, match="step 0"):
        report.dev_points(HISTORY, 0, "cosine_pearson")
    for training in inputs.variants[0].trainings.values():
        training.update({"dev_history": HISTORY, "selected_step": 40})
    drawn = {}
    real = plots.dev_curve
    monkeypatch.setattr(plots, "dev_curve", lambda path, title, runs, metric: drawn.update(runs) or real(
        path, title, runs, metric))
    figures = report.draw_figures(inputs, tmp_path)
    [dev] = [f for f in figures["bert-unsup"] if f.caption.startswith("KorSTS dev")]
    assert (tmp_path / "dev_bert-unsup.png").read_bytes()[:4] == b"\x89PNG" and dev.path.endswith("dev_bert-unsup.png")
    for untrained, during, selected in drawn.values():
        assert untrained["step"] == 0 and [h["step"] for h in during] == [20, 40]
        assert selected["step"] == 40  # not step 0, whose score is the highest
    assert set(drawn) == {"seed-1", "seed-2"}


def test_fewer_than_three_evaluations_give_a_sentence_not_a_plot(inputs, tmp_path):
    for training in inputs.variants[0].trainings.values():
        training.update({"dev_history": HISTORY[1:], "selected_step": 40})
    figures = report.draw_figures(inputs, tmp_path)
    [dev] = [f for f in figures["bert-unsup"] if f.caption.startswith("KorSTS dev")]
    assert dev.path is None and not (tmp_path / "dev_bert-unsup.png").exists()
    assert "step 20 50.00, step 40 60.00 (step 40 selected)" in dev.sentence
    assert f"{dev.caption}: {dev.sentence}" in report.render(inputs, figures, {})


def test_the_learning_rate_panel_knows_an_oscillating_schedule():
    from pipeline.plots import oscillates

    assert oscillates([5e-5, 0.0] * 10)  # the card's lr, 0, lr, 0
    assert oscillates([1.0, 0.5, 0.0, 0.5] * 5)  # two epochs: lr, lr/2, 0, lr/2
    assert not oscillates([1.0 - i / 20 for i in range(20)])  # linear decay
    assert not oscillates([i / 5 for i in range(5)] + [1.0 - i / 15 for i in range(15)])  # warmup, then decay


# --- provenance: what ran, and a commit of this repository ---------------------------------------------

def test_executed_precision_and_determinism():
    import torch

    from pipeline.devices import executed_settings

    assert executed_settings("fp16", False, torch.device("cpu")) == {"precision": "fp32", "deterministic": True}
    assert executed_settings("fp16", False, torch.device("cuda")) == {"precision": "fp16", "deterministic": False}
    assert executed_settings("bf16", True, torch.device("cuda")) == {"precision": "bf16", "deterministic": True}
    assert executed_settings("fp32", False, torch.device("cuda"))["precision"] == "fp32"


def test_provenance_shows_the_effective_precision_beside_the_requested_one(inputs):
    inputs.overrides = {"bert-unsup": {"data": "wiki"}}
    for training in inputs.variants[0].trainings.values():  # a CPU record from before `executed` was kept
        training.update({"device": "cpu", "config": {"model": "m", "data": "wiki", "precision": "fp16",
                                                     "deterministic": False}})
    text = "\n".join(report.provenance_section(inputs))
    assert "| precision | `fp32` (requested `fp16`) |" in text
    assert "| deterministic | `True` (requested `False`) |" in text
    assert "| data | `wiki` |" in text and "| model |" not in text  # only what the variant overrides
    assert "| selected step, seed-1 (dev score) | 3 of 4 (50.00) |" in text
    for training in inputs.variants[0].trainings.values():  # a GPU run that executed what it asked for
        training.update({"device": "cuda", "executed": {"precision": "fp16", "deterministic": False}})
    text = "\n".join(report.provenance_section(inputs))
    assert "| precision |" not in text and "| deterministic |" not in text


def test_the_provenance_commit_is_one_of_this_repository(inputs, tmp_path):
    """make smoke / make rehearsal record the commit of the repository that built the project (the project's
    own commit exists only inside it); the report names that commit, and it resolves here."""
    import subprocess
    from pathlib import Path

    from pipeline.project import name_repository_commit

    root = Path(__file__).resolve().parents[1]
    params: dict = {}
    name_repository_commit(params, root)
    commit = params["report_code"]["commit"]
    assert subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=root).returncode == 0
    assert isinstance(params["report_code"]["dirty"], bool)
    inputs.code, inputs.kind = params["report_code"], "rehearsal"
    text = report.render(inputs, {}, {})
    [line] = [l for l in text.splitlines() if l.startswith("Code: ")]
    assert f"this repository's commit `{commit}`" in line and "the commit that built this rehearsal project" in line
    assert re.findall(r"[0-9a-f]{40}", line) == [commit]


def test_report_code_param_is_checked(tmp_path):
    from pipeline.errors import UserError
    from pipeline.params import Params
    from stages.report import report_code

    assert report_code(Params({"report_code": {}})) is None
    assert report_code(Params({"report_code": {"commit": "ab" * 20, "dirty": False}}))["commit"] == "ab" * 20
    with pytest.raises(UserError, match=r"params.yaml: report_code = 'abc': expected \{\} or"):
        report_code(Params({"report_code": "abc"}))


def test_models_not_scored_are_listed_with_their_reasons(inputs):
    """The failed entries of the published and compare manifests reach the report, one line each."""
    import dataclasses

    assert "## Models not scored" not in report.render(inputs, {}, report.published_differences(inputs))
    failing = dataclasses.replace(
        inputs,
        published_manifest={**inputs.published_manifest, "failed": [
            {"variant": "bert-sup", "id": "p/sup", "revision": "f" * 40, "reason": "p/sup@fff: revision not found"}]},
        compare_manifest={"models": {}, "failed": [
            {"id": "o/a", "revision": "", "reason": "compare: o/a: pooling 'cls' in params.yaml, but ..."},
            {"id": "o/b", "revision": "c" * 40, "reason": "OSError: [Errno 28] No space left on device"}]})
    text = report.render(failing, {}, report.published_differences(failing))
    section = text.split("## Models not scored\n", 1)[1].split("\n## ", 1)[0]
    assert [line for line in section.splitlines() if line.startswith("- ")] == [
        f"- published checkpoint `bert-sup` `p/sup` at `{'f' * 40}` (stage `published`): p/sup@fff: revision not found",
        "- compared encoder `o/a` at `main` (stage `compare`): compare: o/a: pooling 'cls' in params.yaml, but ...",
        f"- compared encoder `o/b` at `{'c' * 40}` (stage `compare`): OSError: [Errno 28] No space left on device"]
