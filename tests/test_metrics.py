"""The eight columns against scipy, a hand computation and sentence-transformers; the bootstrap."""

from __future__ import annotations

import types

import numpy as np
import pytest
from scipy import stats

from pipeline.metrics import (COLUMNS, KEYS, bootstrap_indices, bootstrap_intervals, correlations, pair_scores,
                              resampled_metrics)


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    e1 = rng.normal(size=(60, 16)).astype(np.float32)
    e2 = (e1 + rng.normal(scale=1.5, size=(60, 16))).astype(np.float32)
    gold = np.clip(np.round(5 - np.linalg.norm(e1 - e2, axis=1) / 2, 1), 0, 5)  # ties on purpose
    return e1, e2, gold


def test_pair_scores_by_hand():
    a = np.array([[1.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [3.0, 0.0]])
    s = pair_scores(a, b)
    np.testing.assert_allclose(s["cosine"], [0.0, 9 / 15])
    np.testing.assert_allclose(s["euclidean"], [-np.sqrt(5), -4.0])
    np.testing.assert_allclose(s["manhattan"], [-3.0, -4.0])
    np.testing.assert_allclose(s["dot"], [0.0, 9.0])


def test_correlations_by_hand():
    gold = np.array([1.0, 2.0, 3.0, 4.0])
    scores = {s: np.array([2.0, 1.0, 4.0, 3.0]) for s in ("cosine", "euclidean", "manhattan", "dot")}
    m = correlations(gold, scores)
    # Pearson: deviations (-1.5,-.5,.5,1.5) and (-.5,-1.5,1.5,.5): sum xy = 3.0, sum x^2 = sum y^2 = 5 -> 0.6
    assert m["cosine_pearson"] == pytest.approx(60.0)
    # Spearman on ranks (the same values here) -> 0.6 too
    assert m["dot_spearman"] == pytest.approx(60.0)
    assert m["avg"] == pytest.approx(60.0)


def test_correlations_equal_scipy(data):
    e1, e2, gold = data
    scores = pair_scores(e1, e2)
    m = correlations(gold, scores)
    cos = (e1.astype(np.float64) * e2).sum(1) / (np.linalg.norm(e1.astype(np.float64), axis=1)
                                                 * np.linalg.norm(e2.astype(np.float64), axis=1))
    assert m["cosine_pearson"] == pytest.approx(stats.pearsonr(gold, cos)[0] * 100, abs=1e-9)
    assert m["cosine_spearman"] == pytest.approx(stats.spearmanr(gold, cos)[0] * 100, abs=1e-9)
    man = -np.abs(e1.astype(np.float64) - e2).sum(1)
    assert m["manhattan_spearman"] == pytest.approx(stats.spearmanr(gold, man)[0] * 100, abs=1e-9)
    assert m["avg"] == pytest.approx(np.mean([m[c] for c in COLUMNS]))
    assert list(m) == list(KEYS)


def test_equal_sentence_transformers_evaluator_on_the_same_embeddings(data):
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    e1, e2, gold = data
    s1 = [f"a{i}" for i in range(len(gold))]
    s2 = [f"b{i}" for i in range(len(gold))]
    evaluator = EmbeddingSimilarityEvaluator(s1, s2, gold.tolist(), name="sts", write_csv=False,
                                             similarity_fn_names=["cosine", "euclidean", "manhattan", "dot"])
    lookup = {tuple(s1): e1, tuple(s2): e2}
    evaluator.embed_inputs = lambda model, sentences, **kw: lookup[tuple(sentences)]
    model = types.SimpleNamespace(model_card_data=types.SimpleNamespace(set_evaluation_metrics=lambda *a: None))
    theirs = evaluator(model=model)
    ours = correlations(gold, pair_scores(e1, e2))
    for sim in ("cosine", "euclidean", "manhattan", "dot"):
        for corr in ("pearson", "spearman"):
            assert ours[f"{sim}_{corr}"] / 100 == pytest.approx(theirs[f"sts_{corr}_{sim}"], abs=1e-6)


def test_resampled_metrics_equal_scipy_on_each_resample(data):
    e1, e2, gold = data
    scores = pair_scores(e1, e2)
    idx = bootstrap_indices(len(gold), 5, seed=3)
    values = resampled_metrics(gold, [scores], idx)
    for r in range(5):
        expected = correlations(gold[idx[r]], {k: v[idx[r]] for k, v in scores.items()})
        np.testing.assert_allclose(values[r], [expected[k] for k in KEYS], rtol=1e-7, atol=1e-6)


def test_bootstrap_interval_brackets_the_point_and_shrinks_with_more_pairs():
    rng = np.random.default_rng(0)

    def interval(n):
        x = rng.normal(size=(n, 8))
        y = x + rng.normal(size=(n, 8))
        gold = -np.linalg.norm(x - y, axis=1) + rng.normal(scale=0.5, size=n)
        s = pair_scores(x, y)
        ci = bootstrap_intervals(gold, [s], resamples=1000, seed=0)
        point = correlations(gold, s)
        assert all(ci[k][0] <= point[k] <= ci[k][1] for k in KEYS)
        return ci["avg"][1] - ci["avg"][0]

    assert interval(2000) < interval(100) / 2


def test_bootstrap_is_reproducible_and_difference_with_itself_is_zero(data):
    e1, e2, gold = data
    s = pair_scores(e1, e2)
    a = bootstrap_intervals(gold, [s], resamples=200, seed=7)
    b = bootstrap_intervals(gold, [s], resamples=200, seed=7)
    assert a == b
    diff = bootstrap_intervals(gold, [s], baseline=[s], resamples=200, seed=7)
    assert all(lo == 0 and hi == 0 for lo, hi in diff.values())


def test_seed_mean_statistic(data):
    e1, e2, gold = data
    s1 = pair_scores(e1, e2)
    s2 = pair_scores(e1, e2 * 0.5 + 1)
    idx = bootstrap_indices(len(gold), 3, seed=0)
    both = resampled_metrics(gold, [s1, s2], idx)
    np.testing.assert_allclose(both, (resampled_metrics(gold, [s1], idx) + resampled_metrics(gold, [s2], idx)) / 2)
