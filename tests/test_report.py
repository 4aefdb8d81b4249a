"""The report renderer on synthetic results: seeds, published checkpoints, paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import report
from pipeline.card import CARD, card_order, card_row, row_label
from pipeline.data import StsSet
from pipeline.evaluate import summarize, write_predictions
from pipeline.metrics import COLUMNS, KEYS, pair_scores
from pipeline.params import BootstrapConfig


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
    assert f"**{report.fmt(d['diff'])} [{report.fmt(d['ci_low'])}, {report.fmt(d['ci_high'])}]**" in text


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
    assert f"**{report.fmt(d['diff'])} [{report.fmt(d['ci_low'])}, {report.fmt(d['ci_high'])}]**" in text
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
