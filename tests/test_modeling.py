"""Loading base weights: pre-training checkpoints load clean, anything else stops with one line.

klue/bert-base is a ``BertForPreTraining`` checkpoint and klue/roberta-base a
``RobertaForMaskedLM`` one: ``bert.``/``roberta.``-prefixed keys, MLM (and NSP)
heads, and no pooler for RoBERTa. Tiny models saved the same way stand in for them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import UserError
from pipeline.modeling import load_encoder
from pipeline.tiny import build_tiny_model

SENTENCES = [f"{city}에서 {n}번째 {thing}을 보았다." for city in ("서울", "부산", "대구")
             for n in range(1, 5) for thing in ("사람", "나무")]


def pretraining_checkpoint(root: Path, arch: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny ``BertForPreTraining`` / ``RobertaForMaskedLM`` folder; returns it and its encoder's weights."""
    from transformers import AutoConfig, BertForPreTraining, RobertaForMaskedLM

    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    folder = build_tiny_model(corpus, root / arch, arch=arch, vocab_size=200, hidden=32, heads=2, intermediate=64)
    config = AutoConfig.from_pretrained(folder)
    torch.manual_seed(1)
    model = BertForPreTraining(config) if arch == "bert" else RobertaForMaskedLM(config)
    model.save_pretrained(folder, safe_serialization=True)  # replaces the tiny BertModel/RobertaModel weights
    encoder = model.bert if arch == "bert" else model.roberta
    return folder, {k: v.detach().clone() for k, v in encoder.state_dict().items()}


@pytest.mark.parametrize("arch, prefix, head", [("bert", "bert.", "cls."), ("roberta", "roberta.", "lm_head.")])
def test_pretraining_checkpoints_load_clean_with_their_encoder_weights(tmp_path, arch, prefix, head):
    folder, expected = pretraining_checkpoint(tmp_path, arch)
    keys = load_file(folder / "model.safetensors").keys()
    assert all(k.startswith((prefix, head)) for k in keys) and any(k.startswith(head) for k in keys)
    assert any(".pooler." in k for k in keys) == (arch == "bert")  # RoBERTa's MLM checkpoint has no pooler
    encoder, _ = load_encoder(folder)
    loaded = encoder.backbone.state_dict()
    assert set(expected) - set(loaded) == set()
    for name, value in expected.items():
        torch.testing.assert_close(loaded[name], value, rtol=0, atol=0, msg=name)
    assert len(expected) > 20


def test_a_renamed_encoder_weight_stops_with_one_line(tmp_path):
    folder, _ = pretraining_checkpoint(tmp_path, "bert")
    weights = load_file(folder / "model.safetensors")
    weights["bert.encoder.layer.1.attention.self.qkv.weight"] = weights.pop(
        "bert.encoder.layer.1.attention.self.query.weight")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError) as caught:
        load_encoder(folder)
    assert str(caught.value) == (f"{folder}: weight 'encoder.layer.1.attention.self.query.weight' is missing from "
                                 "the checkpoint; expected every bert encoder weight")


def test_an_unknown_extra_weight_stops_with_one_line(tmp_path):
    folder, _ = pretraining_checkpoint(tmp_path, "roberta")
    weights = load_file(folder / "model.safetensors")
    weights["mlp.dense.weight"] = torch.zeros(32, 32)  # e.g. a SimCSE head saved with the encoder
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UserError) as caught:
        load_encoder(folder)
    assert str(caught.value) == (f"{folder}: weight 'mlp.dense.weight' is in the checkpoint but not in the encoder; "
                                 "expected only encoder weights, MLM/NSP heads (cls., lm_head.), a pooler or "
                                 "position ids")


def test_a_saved_position_ids_buffer_is_accepted(tmp_path):
    """Older checkpoints (e.g. transformers 3.x saves) store ``embeddings.position_ids``; it is recomputed, not read."""
    folder, expected = pretraining_checkpoint(tmp_path, "bert")
    weights = load_file(folder / "model.safetensors")
    weights["bert.embeddings.position_ids"] = torch.arange(128).unsqueeze(0)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    encoder, _ = load_encoder(folder)
    torch.testing.assert_close(encoder.backbone.state_dict()["embeddings.word_embeddings.weight"],
                               expected["embeddings.word_embeddings.weight"], rtol=0, atol=0)


def test_a_saved_model_does_not_record_how_its_tokenizer_was_loaded(tmp_path):
    """transformers writes `local_files_only` (offline or not) and `is_local` into a saved tokenizer
    config: the same training then packaged different bytes online and offline. save_model keeps the
    base tokenizer's own config."""
    from transformers import AutoTokenizer

    from pipeline.modeling import save_model
    from pipeline.smoke_data import write_smoke_sources

    corpus = write_smoke_sources(tmp_path / "sources")["corpus"]
    base = build_tiny_model(corpus, tmp_path / "tiny", arch="bert", hidden=32, heads=2, intermediate=64)
    encoder, _ = load_encoder(base, pooler="cls")
    saved = {}
    for offline in (True, False):
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=offline)
        folder = save_model(encoder, tokenizer, tmp_path / f"out-{offline}", max_len=64).folder
        saved[offline] = (folder / "tokenizer_config.json").read_bytes()
    assert saved[True] == saved[False] == (base / "tokenizer_config.json").read_bytes()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_checkpoint_saved_in_half_precision_loads_as_fp32(tmp_path, dtype):
    """transformers 5 loads weights in the dtype they were saved in; the card's code (transformers 4) always
    had fp32 parameters, which AdamW, the GradScaler and the fp32 evaluation all rely on."""
    from transformers import AutoModel

    folder, _ = pretraining_checkpoint(tmp_path, "bert")
    half = AutoModel.from_pretrained(folder).to(dtype)
    half.save_pretrained(folder, safe_serialization=True)
    saved = {k: v for k, v in load_file(folder / "model.safetensors").items()}
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {dtype}
    encoder, _ = load_encoder(folder, pooler="cls")
    loaded = encoder.backbone.state_dict()
    assert {v.dtype for v in loaded.values() if v.is_floating_point()} == {torch.float32}
    for name, value in saved.items():
        if value.is_floating_point():
            torch.testing.assert_close(loaded[name], value.float(), rtol=0, atol=0, msg=name)  # exact upcast
