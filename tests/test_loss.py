"""The contrastive loss against a hand-written reference and against sentence-transformers."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.loss import similarity_logits, simcse_loss


def reference_loss(a, p, n=None, temp=0.05, w=0.0):
    """InfoNCE written out with Python loops over rows (the formula, not the implementation)."""
    total = 0.0
    for i in range(a.shape[0]):
        logits = []
        for j in range(p.shape[0]):
            logits.append(float(torch.nn.functional.cosine_similarity(a[i], p[j], dim=0)) / temp)
        if n is not None:
            for j in range(n.shape[0]):
                logits.append(float(torch.nn.functional.cosine_similarity(a[i], n[j], dim=0)) / temp
                              + (w if i == j else 0.0))
        log_z = math.log(sum(math.exp(x) for x in logits))
        total += log_z - logits[i]
    return total / a.shape[0]


@pytest.fixture
def emb():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(5, 8, generator=g, dtype=torch.float64) for _ in range(3)]


def test_unsupervised_loss_equals_reference(emb):
    a, p, _ = emb
    assert simcse_loss(a, p, temp=0.05).item() == pytest.approx(reference_loss(a, p, temp=0.05), rel=1e-6)


@pytest.mark.parametrize("w", [0.0, 0.7])
def test_hard_negative_loss_equals_reference(emb, w):
    a, p, n = emb
    got = simcse_loss(a, p, n, temp=0.1, hard_negative_weight=w).item()
    assert got == pytest.approx(reference_loss(a, p, n, temp=0.1, w=w), rel=1e-6)


def test_identical_views_give_low_loss_and_shuffled_views_high_loss(emb):
    a = emb[0]
    # each anchor's positive is itself: the diagonal dominates at temp 0.05
    assert simcse_loss(a, a.clone(), temp=0.05).item() < 0.1
    assert simcse_loss(a, a.roll(1, dims=0), temp=0.05).item() > 5.0


def test_label_offset_scores_the_right_global_column(emb):
    a, p, _ = emb
    # anchors 2..3 of a batch of 5, scored against all 5 positives
    local = simcse_loss(a[2:4], p, temp=0.05, label_offset=2)
    logits = similarity_logits(a, p, 0.05)
    expected = torch.nn.functional.cross_entropy(logits[2:4], torch.tensor([2, 3]))
    assert local.item() == pytest.approx(expected.item(), rel=1e-9)


def test_logits_are_float32_for_bf16_inputs():
    x = torch.randn(4, 8).bfloat16()
    assert similarity_logits(x, x, 0.05).dtype == torch.float32


@pytest.mark.parametrize("with_negatives", [False, True])
def test_gradients_equal_sentence_transformers_mnrl(emb, with_negatives):
    """Same loss value and gradients as MultipleNegativesRankingLoss at scale = 1 / temp."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    temp = 0.05
    ours_inputs = [e.clone().float().requires_grad_(True) for e in emb]
    theirs_inputs = [e.clone().float().requires_grad_(True) for e in emb]
    k = 3 if with_negatives else 2
    ours = simcse_loss(*ours_inputs[:k], temp=temp)
    mnrl = MultipleNegativesRankingLoss(model=torch.nn.Identity(), scale=1.0 / temp)
    theirs = mnrl.compute_loss_from_embeddings(theirs_inputs[:k], labels=None)
    ours.backward()
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    for x, y in zip(ours_inputs[:k], theirs_inputs[:k]):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-6)
