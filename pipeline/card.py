"""The published model card being reproduced: its settings, its rows, its column order.

Values are the card's (x100). AVG is the mean of the eight columns (checked by a test).
"""

from __future__ import annotations

from pipeline.metrics import KEYS

#: Column headers in the card's exact order (after "Model").
COLUMN_TITLES = ("AVG", "Cosine Pearson", "Cosine Spearman", "Euclidean Pearson", "Euclidean Spearman",
                 "Manhattan Pearson", "Manhattan Spearman", "Dot Pearson", "Dot Spearman")

#: variant name -> row label in the card, in the card's row order.
ROWS = {
    "bert-unsup": "SimCSE-BERT-KO (unsup)",
    "bert-sup": "SimCSE-BERT-KO (sup)",
    "roberta-unsup": "SimCSE-RoBERTa-KO (unsup)",
    "roberta-sup": "SimCSE-RoBERTa-KO (sup)",
}


def card_row(variant: str) -> str | None:
    """The card row a variant reproduces: its own name, or the card row it extends.

    ``bert-unsup-simcse`` (the paper's mechanisms with the card's hyperparameters) and
    ``bert-unsup-paper`` (the paper's run) are compared with the card's ``bert-unsup`` row.
    """
    if variant in ROWS:
        return variant
    matches = [row for row in ROWS if variant.startswith(row + "-")]
    return max(matches, key=len) if matches else None


def row_label(variant: str) -> str:
    """Display name: the card's row label, then " · " and the variant's suffix if it extends one."""
    row = card_row(variant)
    if row is None:
        return variant
    return ROWS[row] if row == variant else f"{ROWS[row]} · {variant[len(row) + 1:]}"


def card_order(variants: list[str]) -> list[str]:
    """Variants in the card's row order, each extension right after its card row, others last."""
    ordered = []
    for row in ROWS:
        ordered += [v for v in variants if card_row(v) == row and v == row]
        ordered += [v for v in variants if card_row(v) == row and v != row]
    return ordered + [v for v in variants if v not in ordered]


#: Hub ids of the card's published checkpoints, per variant.
PUBLISHED = {
    "bert-unsup": "snumin44/simcse-ko-bert-unsupervised",
    "bert-sup": "snumin44/simcse-ko-bert-supervised",
    "roberta-unsup": "snumin44/simcse-ko-roberta-unsupervised",
    "roberta-sup": "snumin44/simcse-ko-roberta-supervised",
}


def _row(*values: float) -> dict[str, float]:
    return dict(zip(KEYS, values))


#: benchmark -> variant -> {avg, cosine_pearson, ...}, as published.
CARD = {
    "korsts_test": {
        "bert-unsup": _row(72.85, 73.00, 72.77, 72.96, 72.92, 72.93, 72.86, 72.80, 72.53),
        "bert-sup": _row(85.98, 86.05, 86.00, 85.88, 86.08, 85.90, 86.08, 85.96, 85.89),
        "roberta-unsup": _row(75.79, 76.39, 75.57, 75.71, 75.52, 75.65, 75.42, 76.41, 75.63),
        "roberta-sup": _row(83.06, 82.67, 83.21, 83.22, 83.27, 83.24, 83.28, 82.54, 83.03),
    },
    "klue_dev": {
        "bert-unsup": _row(65.27, 66.27, 64.31, 66.18, 64.05, 66.00, 63.77, 66.64, 64.93),
        "bert-sup": _row(83.96, 82.98, 84.32, 84.32, 84.30, 84.28, 84.20, 83.00, 84.29),
        "roberta-unsup": _row(80.78, 81.20, 80.35, 81.27, 80.36, 81.28, 80.40, 81.13, 80.26),
        "roberta-sup": _row(85.31, 84.14, 85.64, 86.09, 85.68, 86.04, 85.65, 83.94, 85.30),
    },
}

#: The card's experiment settings (unsupervised BERT), as listed.
SETTINGS = {
    "model": "klue/bert-base", "epochs": 1, "max_len": 64, "batch_size": 256, "lr": 5e-5,
    "dropout": 0.1, "temp": 0.05, "pooler": "cls",
}

#: What the card's training code did beyond the listed settings (read from its source).
CODE_SETTINGS = {"recipe": "card", "eval_steps": 100, "weight_decay": 0.01, "seed": 42, "max_grad_norm": 0.0,
                 "warmup_steps": 0, "hard_negative_weight": 0.0}

#: The base model of each card row (the listed settings name the BERT rows' model).
ROW_MODELS = {"bert-unsup": "klue/bert-base", "bert-sup": "klue/bert-base",
              "roberta-unsup": "klue/roberta-base", "roberta-sup": "klue/roberta-base"}

#: The card's training data (by the variant's `data`) and hardware.
DATA = {"wiki": "Korean Wiki Text 1M (korean_wiki_1m.txt)",
        "nli": "277,811 triplets (card recipe) from 942,854 KorNLI multinli + snli train pairs"}
CORPUS_SENTENCES = 1_000_000  # "1M", as the card names its corpus
HARDWARE = "1 A100 GPU, fp16 autocast"


def card_settings(variant: str) -> dict:
    """The card's value of every setting it fixes, for the row ``variant`` reproduces (BERT's for other variants)."""
    return {**SETTINGS, **CODE_SETTINGS, "model": ROW_MODELS.get(card_row(variant) or "", SETTINGS["model"])}


CITATIONS = (
    "Gao, Yao and Chen (2021). SimCSE: Simple Contrastive Learning of Sentence Embeddings. EMNLP 2021. "
    "arXiv:2104.08821.",
    "Ham, Choe, Park, Choi and Soh (2020). KorNLI and KorSTS: New Benchmark Datasets for Korean Natural "
    "Language Understanding. Findings of EMNLP 2020. arXiv:2004.03289.",
    "Park et al. (2021). KLUE: Korean Language Understanding Evaluation. NeurIPS 2021 Datasets and "
    "Benchmarks. arXiv:2105.09680.",
)
