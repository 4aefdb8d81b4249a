"""pipeline/runs.py: one variant trained end to end on a tiny model, as the train stage runs it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.download import sha256_file
from pipeline.modeling import load_encoder
from pipeline.runs import train_variant
from tests.test_train import SENTENCES, _columns, _settings, tiny  # noqa: F401 (tiny is a fixture)


def _inputs(tiny: Path, root: Path) -> tuple[Path, Path]:
    """A base-model folder with its manifest and a token cache with its meta.json, as the
    fetch_model and tokenize stages write them."""
    models = root / "models"
    shutil.copytree(tiny, models)
    files = {p.name: sha256_file(p) for p in sorted(models.iterdir()) if p.is_file()}
    (models / "manifest.json").write_text(json.dumps({"model": "tiny", "source": "tiny", "revision": None,
                                                      "commit": None, "pinned": True, "files": files}))
    _, tokenizer = load_encoder(tiny)
    tokens = root / "tokens"
    _columns(tokens, tokenizer, SENTENCES)
    (tokens / "meta.json").write_text(json.dumps({"model": "tiny", "max_len": 32, "data_manifest": {}}))
    return models, tokens


def test_dvclive_summary_holds_the_selected_steps_dev_scores(tiny, tmp_path):  # noqa: F811
    models, tokens = _inputs(tiny, tmp_path)
    # a large step and an evaluation every step: the dev score peaks before the end
    settings = _settings(lr=3e-2, eval_steps=1, recipe="simcse")
    live = tmp_path / "dvclive"
    train_variant(settings, variant="v", model="tiny", data="wiki", seeds=[5], record_config={"data": "wiki"},
                  tokens=tokens, models=models, out=tmp_path / "out", live_dir=live, resume=tmp_path / "resume",
                  device_name="cpu")
    training = json.loads((tmp_path / "out" / "seed-5" / "training.json").read_text())
    history = training["dev_history"]
    assert training["selected_step"] != history[-1]["step"]  # the case this test is about
    summary = json.loads((live / "metrics.json").read_text())["seed-5"]
    selected = next(h for h in history if h["step"] == training["selected_step"])
    assert summary["selected_step"] == training["selected_step"]
    assert summary["dev"] == pytest.approx({k: v for k, v in selected.items() if k != "step"})
    assert summary["dev"]["cosine_spearman"] != pytest.approx(history[-1]["cosine_spearman"])
    # the plots keep every evaluation, the last one included
    header, *rows = (live / "plots" / "metrics" / "seed-5" / "dev" / "cosine_spearman.tsv").read_text().splitlines()
    step = header.split("\t").index("step")
    assert [int(r.split("\t")[step]) for r in rows] == [h["step"] for h in history]
