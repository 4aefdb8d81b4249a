"""pipeline/runs.py: one variant trained end to end on a tiny model, as the train stage runs it,
from a base model given as an absolute local folder; what dvclive, the report and the model card
make of that run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.modeling import load_encoder
from pipeline.runs import train_variant
from stages.fetch_model import fetch_one
from tests.test_train import SENTENCES, _columns, _settings, tiny  # noqa: F401 (tiny is a fixture)

SEED = 5


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):  # noqa: F811
    """(project root, training.json, dvclive folder) of a short real run from an absolute model path."""
    root = tmp_path_factory.mktemp("run")
    model = root / "elsewhere" / "my-encoder"  # the `model` param as a user may give it: an absolute folder
    shutil.copytree(tiny, model)
    assert model.is_absolute()
    models = root / "data" / "models" / "v"
    fetch_one(str(model), None, models)  # the fetch_model stage's own function
    _, tokenizer = load_encoder(tiny)
    tokens = root / "tokens"
    _columns(tokens, tokenizer, SENTENCES)
    (tokens / "meta.json").write_text(json.dumps({"model": str(model), "max_len": 32, "data_manifest": {}}))
    # a large step and an evaluation every step: the dev score peaks before the end
    settings = _settings(lr=3e-2, eval_steps=1, recipe="simcse")
    live = root / "dvclive"
    config = {"model": str(model), "data": "wiki", "pooler": "mean", "max_len": 32}
    train_variant(settings, variant="bert-unsup", model=str(model), data="wiki", seeds=[SEED], record_config=config,
                  tokens=tokens, models=models, out=root / "out", live_dir=live, resume=root / "resume",
                  device_name="cpu")
    training = json.loads((root / "out" / f"seed-{SEED}" / "training.json").read_text())
    return root, training, live


def test_dvclive_summary_holds_the_selected_steps_dev_scores(trained):
    _, training, live = trained
    history = training["dev_history"]
    assert training["selected_step"] != history[-1]["step"]  # the case this test is about
    summary = json.loads((live / "metrics.json").read_text())[f"seed-{SEED}"]
    selected = next(h for h in history if h["step"] == training["selected_step"])
    assert summary["selected_step"] == training["selected_step"]
    assert summary["dev"] == pytest.approx({k: v for k, v in selected.items() if k != "step"})
    assert summary["dev"]["cosine_spearman"] != pytest.approx(history[-1]["cosine_spearman"])
    # the plots keep every evaluation, the last one included
    tsv = live / "plots" / "metrics" / f"seed-{SEED}" / "dev" / "cosine_spearman.tsv"
    header, *rows = tsv.read_text().splitlines()
    step = header.split("\t").index("step")
    assert [int(r.split("\t")[step]) for r in rows] == [h["step"] for h in history]


def test_report_and_model_card_show_no_absolute_path(trained):
    from pipeline import report
    from pipeline.hub import models_manifest
    from pipeline.modelcard import render_model_card
    from pipeline.evaluate import summarize
    from pipeline.params import BootstrapConfig
    from tests.test_report import _scores, _sets

    root, training, _ = trained
    assert training["base_model"]["source"].startswith(str(root))  # the record keeps the path as given
    weights = training["base_model"]["weights_sha256"]
    assert len(weights) == 64
    sets = _sets()
    metrics = summarize(sets, [_scores(sets, 0.5, 1)], protocol="card",
                               bootstrap=BootstrapConfig(resamples=100, seed=1))
    card = render_model_card(training, metrics)
    abs_data = root / "mirror" / "sts-test.tsv"
    inputs = report.ReportInputs(
        variants=[report.VariantResult("bert-unsup", metrics, {f"seed-{SEED}": training}, {}, {})],
        baseline={"local--my-encoder": metrics}, models_manifest=models_manifest(root / "data" / "models"),
        data_manifest={"korsts_test": {"file": "korsts_test.tsv", "source": str(abs_data), "revision": None,
                                       "sha256": "0" * 64, "sha256_pinned": True, "rows": 3}})
    text = report.render(inputs, {}, {})
    label = f"my-encoder (local folder, weights sha256 {weights[:12]})"
    for shown in (card, text):
        assert str(root) not in shown
        assert label in shown
    assert "base_model:" not in card  # the hub field takes a hub id only
    assert text.count(label) == 1  # defined once, in the legend; tables use the short name
    assert "| my-encoder — untrained baseline |" in text
    assert "| korsts_test | `korsts_test.tsv` | local file sts-test.tsv |" in text


def test_the_record_says_what_ran_on_the_cpu(trained):
    """A CPU run records fp32 and deterministic kernels as executed, whatever precision it requested
    (the report shows this beside the requested value)."""
    _, training, _ = trained
    assert training["device"] == "cpu"
    assert training["executed"] == {"precision": "fp32", "deterministic": True}
