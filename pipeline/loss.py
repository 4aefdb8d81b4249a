"""The SimCSE contrastive loss: pure tensor math, no model (Gao et al. 2021, EMNLP).

Encoding lives elsewhere, so the loss is tested on small tensors against a
hand-written reference and against sentence-transformers'
``MultipleNegativesRankingLoss`` (scale = 1 / temp).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_logits(anchor: torch.Tensor, candidates: torch.Tensor, temp: float) -> torch.Tensor:
    """Cosine similarity of every anchor with every candidate, divided by ``temp``.

    Args:
        anchor: (B, H) embeddings.
        candidates: (C, H) embeddings.
        temp: temperature > 0.

    Returns:
        (B, C) logits, computed in float32 whatever the input dtype (bf16 cosines
        at temp 0.05 lose the ranking between near-duplicates).
    """
    a = F.normalize(anchor.float(), dim=-1)
    c = F.normalize(candidates.float(), dim=-1)
    return a @ c.T / temp


def simcse_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor | None = None,
    *,
    temp: float,
    hard_negative_weight: float = 0.0,
    label_offset: int = 0,
) -> torch.Tensor:
    """InfoNCE over in-batch negatives, with optional hard negatives.

    Unsupervised SimCSE passes the same sentences twice (different dropout
    masks): ``anchor`` and ``positive`` are the two views. Supervised SimCSE
    passes (premise, entailment, contradiction).

    logits[i] = [sim(a_i, p_j) for all j] + [sim(a_i, n_j) + w * [i == j] for all j],
    all over ``temp``; the target of row i is column ``label_offset + i``; the loss
    is the mean cross-entropy over rows.

    Args:
        anchor: (B, H) anchors of this process.
        positive: (P, H) positives; P = B on one process, or the global batch when
            gathered across processes (then row i's positive is ``label_offset + i``).
        negative: optional (P, H) hard negatives, aligned with ``positive``.
        temp: temperature (the card: 0.05).
        hard_negative_weight: w added to each anchor's own hard-negative logit
            (SimCSE's ``hard_negative_weight``; 0 = plain hard negatives).
        label_offset: index of this process's first anchor in the global batch.

    Returns:
        scalar loss (float32).
    """
    logits = similarity_logits(anchor, positive, temp)  # (B, P)
    if negative is not None:
        neg = similarity_logits(anchor, negative, temp)  # (B, P)
        if hard_negative_weight:
            rows = torch.arange(anchor.shape[0], device=neg.device)
            bonus = torch.zeros_like(neg)
            bonus[rows, rows + label_offset] = hard_negative_weight
            neg = neg + bonus
        logits = torch.cat([logits, neg], dim=1)  # (B, 2P)
    labels = torch.arange(anchor.shape[0], device=logits.device) + label_offset
    return F.cross_entropy(logits, labels)
