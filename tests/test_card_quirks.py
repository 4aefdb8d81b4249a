"""The card's training quirks, pinned through the public training entry point :func:`train_seed`.

Each test runs a few steps of real training on a tiny BERT and checks what the card's code did
(README "What the card's code really did"): no MLP head, ``CosineAnnealingLR(T_max=epochs)``
stepped per batch, selection on cosine Pearson (card) / Spearman (simcse), strictly better only,
evaluation every ``eval_steps`` and at the end, AdamW's settings, [CLS] of the last hidden state
and the temperature-scaled cross-entropy. Model selection is driven by a scripted
``pipeline.train.dev_scores``, so which step wins is known in advance. The quirks pinned elsewhere
are listed in the README table; this file holds the ones no other test pinned.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from pipeline.modeling import collate, encode, load_encoder
from pipeline.tiny import build_tiny_model
from pipeline.tokens import TokenColumn, tokenize_to_arrays, write_column
from pipeline.train import DevSet, TrainSettings, train_seed

SENTENCES = [f"{city}에서 {n}번째 {thing}을 보았다." for city in ("서울", "부산", "대구", "광주")
             for n in range(1, 5) for thing in ("사람", "나무")]  # 32
LR = 1e-3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    folder = build_tiny_model(corpus, root / "model", vocab_size=200, hidden=32, layers=1, heads=2, intermediate=64)
    # At its initialisation every [CLS] vector of the tiny model is within 1e-5 of the others in cosine, so every
    # loss is ~ln N whatever is computed; dense weights x10 make them differ (off-diagonal cosine ~0.85-0.99).
    state = load_file(folder / "model.safetensors")
    state = {k: v * 10 if v.dim() == 2 and not k.startswith("embeddings.") else v for k, v in state.items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def data(tiny, tmp_path_factory) -> tuple[TokenColumn, DevSet]:
    """The training column (every sentence) and a dev set of 16 pairs, tokenized."""
    folder = tmp_path_factory.mktemp("tok")
    _, tokenizer = load_encoder(tiny)
    for name, part in (("sent", SENTENCES), ("dev1", SENTENCES[:16]), ("dev2", SENTENCES[16:])):
        ids, offsets = tokenize_to_arrays(tokenizer, part, max_len=32, progress=False)
        write_column(folder, name, ids, offsets)
    np.save(folder / "dev.scores.npy", np.linspace(0, 5, 16))
    return TokenColumn(folder, "sent"), DevSet.load(folder)


def _settings(**overrides) -> TrainSettings:
    # batch 4 over 32 sentences: 8 steps; eval_steps 3: dev scored at 3, 6 and (the end) 8
    base = dict(epochs=1, batch_size=4, lr=LR, dropout=0.1, temp=0.05, pooler="cls", recipe="card",
                eval_steps=3, weight_decay=0.01, hard_negative_weight=0.0, max_len=32, checkpoint_steps=1000,
                log_steps=1)
    return TrainSettings(**{**base, **overrides})


def _train(tiny, data, tmp_path, settings: TrainSettings):
    column, dev = data
    return train_seed(settings, seed=42, model_dir=tiny, columns=[column], dev=dev, out_dir=tmp_path / "out",
                      state_path=tmp_path / "state.pt", fingerprint_value="f", device=torch.device("cpu"),
                      progress=False)


def _logged(result, key: str) -> list[float]:
    return [values[key] for _, values in result.history if key in values]


# --- the loss: [CLS] of the backbone, no head, cosine / temp, cross-entropy -----------------------

def _loss_by_hand(tiny: Path, temp: float) -> float:
    """The card's first-step loss on all sentences at once, from transformers and torch.nn.functional only:
    [CLS] of the last hidden state (no MLP head, not pooler_output), cosine similarity / temp,
    cross-entropy with each sentence's own second view (identical: dropout 0) as the label."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(tiny), AutoModel.from_pretrained(tiny).eval()
    with torch.no_grad():
        batch = tokenizer(SENTENCES, padding=True, truncation=True, max_length=32, return_tensors="pt")
        z = model(**batch).last_hidden_state[:, 0]  # (N, H)
        logits = F.cosine_similarity(z[:, None], z[None, :], dim=-1) / temp  # (N, N)
        return float(F.cross_entropy(logits, torch.arange(len(SENTENCES))))


def test_card_training_loss_is_the_backbone_cls_without_the_mlp_head(tiny, data, tmp_path):
    """One step over the whole set, dropout off: the logged loss is the loss of the backbone's [CLS]
    (the card's head never ran); the simcse recipe, whose head does run, logs another loss."""
    full_batch = dict(batch_size=len(SENTENCES), dropout=0.0, eval_steps=100)
    expected = _loss_by_hand(tiny, temp=0.05)
    card = _train(tiny, data, tmp_path / "card", _settings(recipe="card", **full_batch))
    assert card.total_steps == 1
    assert _logged(card, "train/loss") == [pytest.approx(expected, rel=1e-5)]
    simcse = _train(tiny, data, tmp_path / "simcse", _settings(recipe="simcse", **full_batch))
    assert abs(expected - math.log(len(SENTENCES))) > 0.5  # the [CLS] vectors differ: the loss can tell
    assert _logged(simcse, "train/loss")[0] != pytest.approx(expected, rel=1e-2)  # the head changes the loss
    # the temperature divides the cosine: another temp, another loss, still the formula's
    hot = _train(tiny, data, tmp_path / "hot", _settings(recipe="card", temp=0.5, **full_batch))
    assert _logged(hot, "train/loss") == [pytest.approx(_loss_by_hand(tiny, temp=0.5), rel=1e-5)]


# --- the learning rate -----------------------------------------------------------------------------

@pytest.mark.parametrize("recipe, expected", [
    ("card", [LR, 0.0] * 4),  # CosineAnnealingLR(T_max=1 epoch) stepped every batch
    ("simcse", [LR * (8 - k) / 8 for k in range(8)]),  # linear decay to 0, no warmup
])
def test_learning_rate_per_training_step(tiny, data, tmp_path, recipe, expected):
    result = _train(tiny, data, tmp_path, _settings(recipe=recipe, eval_steps=100))
    assert _logged(result, "train/lr") == pytest.approx(expected, abs=1e-12)


# --- AdamW -----------------------------------------------------------------------------------------

def _scripted_dev(monkeypatch, pearson: list[float], spearman: list[float]) -> list[tuple[dict, torch.nn.Module]]:
    """Replace ``pipeline.train.dev_scores`` with the given scores, call by call after the untrained
    model's (step 0), which scores higher than any (it must never be selected); returns, per call after
    step 0, the encoder's backbone weights at that moment and the encoder itself."""
    import pipeline.train as T

    calls: list[tuple[dict, torch.nn.Module]] = []
    untrained: list[bool] = []

    def scripted(encoder, *args, **kwargs):
        if not untrained:  # step 0, scored before any update
            untrained.append(True)
            return {"cosine_pearson": 99.0, "cosine_spearman": 99.0}
        weights = {k: v.detach().clone() for k, v in encoder.backbone.state_dict().items()}
        i = len(calls)
        calls.append((weights, encoder))
        return {"cosine_pearson": pearson[i], "cosine_spearman": spearman[i]}

    monkeypatch.setattr(T, "dev_scores", scripted)
    return calls


def test_card_optimizer_is_adamw_eps_1e8_without_decay_on_bias_and_layernorm(tiny, data, tmp_path, monkeypatch):
    groups_seen: list[list[dict]] = []
    real_init = torch.optim.AdamW.__init__

    def spy(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        # a copy: the scheduler changes the groups' lr afterwards
        groups_seen.append([{**group, "params": list(group["params"])} for group in self.param_groups])

    monkeypatch.setattr(torch.optim.AdamW, "__init__", spy)
    calls = _scripted_dev(monkeypatch, [1.0], [1.0])
    _train(tiny, data, tmp_path, _settings(batch_size=len(SENTENCES), weight_decay=0.01))
    assert len(groups_seen) == 1 and len(calls) == 1  # one AdamW; scored once after step 0, at the end
    encoder = calls[0][1]
    names = {id(p): n for n, p in encoder.named_parameters()}
    decay = {}
    for group in groups_seen[0]:
        assert group["eps"] == 1e-8 and group["lr"] == LR and tuple(group["betas"]) == (0.9, 0.999)
        decay.update({names[id(p)]: group["weight_decay"] for p in group["params"]})
    trainable = {n for n, p in encoder.named_parameters() if p.requires_grad}
    assert set(decay) == trainable and encoder.head is None
    assert any("LayerNorm.weight" in n for n in decay) and any(n.endswith(".bias") for n in decay)
    for name, wd in decay.items():
        assert wd == (0.0 if name.endswith("bias") or "LayerNorm.weight" in name else 0.01), name


# --- model selection -------------------------------------------------------------------------------

@pytest.mark.parametrize("recipe, pearson, spearman, selected", [
    ("card", [10.0, 30.0, 20.0], [40.0, 10.0, 20.0], 6),    # the card keeps the best cosine *Pearson*
    ("simcse", [10.0, 30.0, 20.0], [40.0, 10.0, 20.0], 3),  # the paper the best cosine Spearman
    ("card", [20.0, 20.0, 20.0], [1.0, 2.0, 3.0], 3),       # a tie is not better: the first stays
    ("simcse", [1.0, 2.0, 3.0], [5.0, 7.0, 7.0], 6),
])
def test_selection_keeps_the_first_strictly_best_step_of_the_recipes_metric(tiny, data, tmp_path, monkeypatch,
                                                                            recipe, pearson, spearman, selected):
    calls = _scripted_dev(monkeypatch, pearson, spearman)
    result = _train(tiny, data, tmp_path, _settings(recipe=recipe))
    # scored before training (step 0, never selected though it scores best), every eval_steps (3) and at
    # the end (8, not a multiple of 3)
    assert [h["step"] for h in result.dev_history] == [0, 3, 6, 8] and len(calls) == 3
    assert result.selected_step == selected
    at = [3, 6, 8].index(selected)
    assert result.best_dev == {"cosine_pearson": pearson[at], "cosine_spearman": spearman[at]}
    # the saved model holds the weights the selected evaluation saw, and no other evaluation's
    saved = load_file(tmp_path / "out" / "model.safetensors")
    for i, (weights, _) in enumerate(calls):
        same = all(torch.equal(saved[k], weights[k]) for k in saved)
        assert same == (i == at), (i, at)


# --- evaluation: [CLS] of the last hidden state -----------------------------------------------------

def test_evaluated_embedding_is_cls_of_the_last_hidden_state_not_pooler_output(tiny):
    """What the card evaluated (its inference example's ``pooler_output`` is another vector)."""
    from transformers import AutoModel, AutoTokenizer

    encoder, tokenizer = load_encoder(tiny, pooler="cls")
    ours = encode(encoder, tokenizer, SENTENCES, max_len=32)
    model = AutoModel.from_pretrained(tiny).eval()
    with torch.no_grad():
        out = model(**AutoTokenizer.from_pretrained(tiny)(SENTENCES, padding=True, return_tensors="pt"))
    np.testing.assert_allclose(ours, out.last_hidden_state[:, 0].numpy(), rtol=1e-5, atol=1e-5)
    assert out.pooler_output is not None and not np.allclose(ours, out.pooler_output.numpy(), atol=1e-2)
    # training pools the same vector (one pooling function): the training view without a head is embed
    ids = tokenizer(SENTENCES[:4])["input_ids"]
    input_ids, mask = collate(ids, tokenizer.pad_token_id)
    encoder.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder(input_ids, mask).numpy(), ours[:4], rtol=1e-5, atol=1e-5)


def test_the_default_run_trains_once_with_the_card_seed_42():
    from pipeline.params import Params, effective_seeds
    from tests.conftest import ROOT

    assert effective_seeds(Params.load(ROOT / "params.yaml")) == (42,)
