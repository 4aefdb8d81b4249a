"""MTEB-format results without MTEB's rows: scores picked from the closest protocol, fractions, MTEB's score
names and layout, labelled with our file (tests/test_mteb_rows.py: the files on MTEB's own rows)."""

from __future__ import annotations

import json

import pytest

from pipeline import mteb, report
from pipeline.data import load_benchmark
from pipeline.evaluate import summarize
from pipeline.modelcard import model_index
from pipeline.params import BootstrapConfig
from tests.test_report import _scores, _sets


@pytest.fixture(scope="module")
def metrics():
    sets = _sets()
    # different gold scores per protocol, so a block read from the wrong protocol cannot match
    sets["clean"] = {b: type(s)(s.name, s.sentence1, s.sentence2, s.scores[::-1].copy())
                     for b, s in sets["card"].items()}
    return summarize(sets, [_scores(sets, 0.5, 1)], protocol="card", bootstrap=BootstrapConfig(resamples=100))


MANIFEST = {"korsts_test": {"source": "https://example.org/abc/sts-test.tsv", "revision": "abc", "sha256": "1" * 64,
                            "rows": 1379},
            "klue_dev": {"source": "https://example.org/def/klue.json", "revision": "def", "sha256": "2" * 64,
                         "rows": 519}}


def _data(metrics, bench):
    return mteb.data_used(metrics, bench, {}, MANIFEST)


def test_task_results_use_mtebs_protocol_and_fractions(metrics):
    korsts = mteb.task_result(metrics, "korsts_test", data=_data(metrics, "korsts_test"), evaluation_time=1.5)
    klue = mteb.task_result(metrics, "klue_dev", data=_data(metrics, "klue_dev"), evaluation_time=None)
    assert set(korsts) == {"dataset_revision", "task_name", "mteb_version", "scores", "evaluation_time",
                           "kg_co2_emissions", "evaluated_on"}
    assert (korsts["task_name"], klue["task_name"]) == ("KorSTS", "KLUE-STS")
    assert list(korsts["scores"]) == ["test"] and list(klue["scores"]) == ["validation"]
    k, q = korsts["scores"]["test"][0], klue["scores"]["validation"][0]
    clean, card = metrics["by_protocol"]["clean"]["korsts_test"], metrics["by_protocol"]["card"]["klue_dev"]
    assert clean["cosine_spearman"] != pytest.approx(metrics["by_protocol"]["card"]["korsts_test"]["cosine_spearman"])
    assert k["main_score"] == pytest.approx(clean["cosine_spearman"] / 100)  # KorSTS: sentences as published
    assert q["main_score"] == pytest.approx(card["cosine_spearman"] / 100)  # KLUE-STS: labels.label
    assert list(k)[:9] == [*mteb.SCORE_KEYS, "main_score"]  # MTEB's keys: no dot product
    assert {key: k[key] for key in mteb.SCORE_KEYS[2:]} == pytest.approx(
        {key: clean[key] / 100 for key in mteb.SCORE_KEYS[2:]})
    assert k["spearman"] == k["cosine_spearman"] and k["pearson"] == k["cosine_pearson"]
    assert (k["hf_subset"], k["languages"]) == ("default", ["kor-Hang"])
    assert (korsts["dataset_revision"], korsts["evaluation_time"]) == ("abc", 1.5)
    assert korsts["evaluated_on"] == ("https://example.org/abc/sts-test.tsv (commit abc, sha256 " + "1" * 64
                                      + ", 1379 pairs; not the dataset MTEB's task reads)")


def test_model_card_index_names_our_files_not_mtebs(metrics):
    results = model_index("m", metrics, {b: _data(metrics, b) for b in mteb.TASKS})[0]["results"]
    assert [r["dataset"]["name"].split(":")[0] for r in results] == ["KorSTS test", "KLUE-STS validation"]
    assert [(r["dataset"]["type"], r["dataset"]["split"], r["dataset"]["revision"]) for r in results] == [
        ("https://example.org/abc/sts-test.tsv", "test", "abc"), ("https://example.org/def/klue.json", "validation",
                                                                  "def")]
    values = {m["type"]: m["value"] for m in results[0]["metrics"]}
    assert values["main_score"] == round(metrics["by_protocol"]["clean"]["korsts_test"]["cosine_spearman"], 2)


def test_report_writes_one_file_per_model_and_task(metrics, tmp_path):
    inputs = report.ReportInputs(
        variants=[report.VariantResult("bert-unsup", metrics, {}, {}, {})],
        published={"bert-unsup": metrics},
        published_manifest={"checkpoints": {"bert-unsup": {"model": "snumin44/simcse-ko-bert-unsupervised",
                                                           "kind": "hub", "commit": "c0ffee"}}},
        baseline={"klue--bert-base": metrics},
        models_manifest={"klue--bert-base": {"model": "klue/bert-base", "kind": "hub", "commit": "b45e"}})
    models = report.mteb_models(inputs, {"evaluate@bert-unsup": {"wall_seconds": 8.0},
                                         "baseline": {"wall_seconds": 3.0}})
    manifest = {b: {**MANIFEST[b], "revision": r} for b, r in (("korsts_test", "0df0fe7d"), ("klue_dev", "3efd9870"))}
    written = mteb.write_results(tmp_path, models, {}, manifest)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "klue__bert-base/b45e/KLUE-STS.json", "klue__bert-base/b45e/KorSTS.json",
        "simcse-ko-bert-unsup-repro/no_revision_available/KLUE-STS.json",
        "simcse-ko-bert-unsup-repro/no_revision_available/KorSTS.json",
        "snumin44__simcse-ko-bert-unsupervised/c0ffee/KLUE-STS.json",
        "snumin44__simcse-ko-bert-unsupervised/c0ffee/KorSTS.json"]
    ours = json.loads((tmp_path / "simcse-ko-bert-unsup-repro/no_revision_available/KorSTS.json").read_text())
    assert (ours["evaluation_time"], ours["dataset_revision"]) == (8.0, "0df0fe7d")
    published = json.loads((tmp_path / "snumin44__simcse-ko-bert-unsupervised/c0ffee/KorSTS.json").read_text())
    assert published["evaluation_time"] is None  # no timing recorded for that stage


@pytest.mark.shared_data
def test_our_korsts_file_has_three_pairs_more_than_mtebs(shared_data):
    """KLUE-STS: MTEB's 519 pairs; KorSTS: 1,379, not MTEB's 1,376 (why the files must say which rows)."""
    korsts = load_benchmark("korsts", shared_data / "kornlu" / "sts-test.tsv", "clean")
    klue = load_benchmark("klue", shared_data / "klue-sts" / "klue-sts-v1.1_dev.json", "card")
    assert (len(korsts), len(klue)) == (mteb.TASKS["korsts_test"]["rows"] + 3, mteb.TASKS["klue_dev"]["rows"])


def test_a_local_source_is_named_by_its_file_name_only(metrics, tmp_path):
    """Model cards and MTEB files leave this machine: an absolute local source shows as its file name."""
    local = {**MANIFEST, "korsts_test": {**MANIFEST["korsts_test"], "source": str(tmp_path / "mirror" / "sts.tsv")}}
    data = mteb.data_used(metrics, "korsts_test", {}, local)
    entry = mteb.model_index_entry(metrics, "korsts_test", data)
    result = mteb.task_result(metrics, "korsts_test", data=data, evaluation_time=None)
    assert entry["dataset"]["type"] == "local file sts.tsv"
    assert str(tmp_path) not in json.dumps([entry, result]) and "local file sts.tsv" in result["evaluated_on"]


def test_report_stage_uses_mtebs_rows_only_where_they_were_loaded(metrics, tmp_path):
    """stages.report.write_mteb with a rows file that loaded KorSTS only: KorSTS on MTEB's rows (its dataset
    revision, the metrics' `mteb` scores), KLUE-STS labelled with our file."""
    from pipeline.atomic import write_json
    from stages.report import write_mteb

    on_rows = {key: 0.01 * (i + 1) for i, key in enumerate([*mteb.SCORE_KEYS, "main_score"])}
    with_rows = {**metrics, "mteb": {"korsts_test": on_rows}}
    write_json(tmp_path / "rows.json", {
        "korsts_test": {"loaded": True, "dataset": "dkoterwa/kor-sts", "config": "default", "split": "test",
                        "revision": mteb.TASKS["korsts_test"]["revision"], "statistics": {"num_samples": 1376},
                        "rows": []},
        "klue_dev": {"loaded": False, "reason": "ConnectionError: offline"}})
    inputs = report.ReportInputs(variants=[report.VariantResult("bert-unsup", with_rows, {}, {}, {})],
                                 data_manifest=MANIFEST)
    write_mteb(inputs, {}, tmp_path / "mteb", tmp_path / "rows.json")
    folder = tmp_path / "mteb" / "simcse-ko-bert-unsup-repro" / mteb.NO_REVISION
    korsts = json.loads((folder / "KorSTS.json").read_text(encoding="utf-8"))
    klue = json.loads((folder / "KLUE-STS.json").read_text(encoding="utf-8"))
    assert korsts["dataset_revision"] == mteb.TASKS["korsts_test"]["revision"]
    assert korsts["scores"]["test"][0]["main_score"] == on_rows["cosine_spearman"]
    assert korsts["evaluated_on"] == "dkoterwa/kor-sts (default, split test, 1376 pairs)"
    assert klue["dataset_revision"] == "def" and "example.org/def/klue.json" in klue["evaluated_on"]
    assert klue["scores"]["validation"][0]["main_score"] == pytest.approx(
        metrics["by_protocol"]["card"]["klue_dev"]["cosine_spearman"] / 100)
