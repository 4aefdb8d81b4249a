"""pipeline/modelcard.py: the packaged model's licence follows from its training data."""

from __future__ import annotations

import pytest
import yaml

from pipeline.modelcard import LICENCES, render_model_card
from pipeline.sources import CORPUS_FROM, TRIPLETS_FROM


def _training(variant: str, data: str, source: str | None) -> dict:
    """The fields of a training.json that render_model_card reads, for a hub base model."""
    return {"variant": variant, "config": {"data": data, "pooler": "cls", "max_len": 64, "model": "klue/bert-base"},
            "base_model": {"model": "klue/bert-base", "source": "https://huggingface.co/klue/bert-base",
                           "commit": "a" * 40},
            "data": {"from": source} if source else {},
            "selected_step": 100, "total_steps": 200, "selection_metric": "dev.cosine_pearson",
            "best_dev": {"cosine_pearson": 80.0}}


def _render(variant: str, data: str, source: str | None) -> tuple[dict, str]:
    """(YAML metadata, body) of the rendered model card."""
    text = render_model_card(_training(variant, data, source), {})
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def _licence_section(body: str) -> str:
    return body.split("## Licence\n\n", 1)[1].split("\n\n## ", 1)[0]


def test_every_training_source_has_a_licence():
    # a new corpus.from / triplets.from must state its licence before a model trained on it can be packaged
    assert set(LICENCES) == set(CORPUS_FROM) | set(TRIPLETS_FROM)


@pytest.mark.parametrize("variant,data,source", [("bert-unsup", "wiki", "wiki"), ("bert-sup", "nli", "kornli_train"),
                                                 ("bert-unsup", "wiki", None), ("bert-sup", "nli", None)])
def test_card_data_is_share_alike_and_says_why(variant, data, source):
    meta, body = _render(variant, data, source)
    assert meta["license"] == "cc-by-sa-4.0"
    assert "license_name" not in meta
    text = _licence_section(body)
    assert text.startswith("CC BY-SA 4.0 (share-alike) because it is an adaptation of ")
    if data == "wiki":  # an old record without data.from falls back to the card's own sources
        assert "Korean Wikipedia" in text and "MultiNLI" not in text
    else:
        assert "KorNLI train" in text and "MultiNLI" in text and "SNLI (CC BY-SA 4.0)" in text


@pytest.mark.parametrize("variant,data,source", [("minilm-unsup", "wiki", "korsts_xnli"),
                                                 ("minilm-sup", "nli", "xnli_test")])
def test_xnli_derived_data_declares_no_single_licence(variant, data, source):
    meta, body = _render(variant, data, source)
    # the hub requires license_name and license_link with `other`
    assert meta["license"] == "other"
    assert meta["license_name"] and meta["license_link"].startswith("https://github.com/facebookresearch/XNLI")
    text = _licence_section(body)
    assert "CC BY-NC 4.0" in text and "non-commercially" in text
    assert "XNLI-ko test" in text if source == "xnli_test" else "XNLI-ko dev" in text
