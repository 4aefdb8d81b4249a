"""The real benchmark files (../shared/data, read in place): the download stage verifies them against
the sha256s pinned in params.yaml and counts their rows; the format traps are checked on the real
bytes. Skipped when the folder is absent."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.data import build_triplets, read_klue_sts, read_korsts, read_kornli
from tests.conftest import ROOT, run_module

pytestmark = pytest.mark.shared_data

PINNED = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["sources"]
#: source key -> file under ../shared/data
FILES = {
    "corpus": "kowiki-sample/wiki_corpus_examples.txt",
    "korsts_train": "kornlu/sts-train.tsv",
    "korsts_dev": "kornlu/sts-dev.tsv",
    "korsts_test": "kornlu/sts-test.tsv",
    "klue_dev": "klue-sts/klue-sts-v1.1_dev.json",
    "kornli_mnli": "kornlu/xnli.dev.ko.tsv",
    "kornli_snli": "kornlu/xnli.test.ko.tsv",
}
BENCHMARKS = ("korsts_train", "korsts_dev", "korsts_test", "klue_dev")
#: sha256 of the three stand-ins, from their PROVENANCE.md (params.yaml pins only the benchmarks)
PROVENANCE_SHA = {
    "corpus": "85979a5fbe8934f9f87d436ad47195ec1d2c9a15d50b05de9ef8f5445a7279f9",
    "kornli_mnli": "821fb1c1c2e538ac2724a6132da36ffa379eb9a542ceb89243b3cf711377382c",
    "kornli_snli": "0db53cf8e182283a0d0404ec3fe1b15d1e29236d23d22082dc20d43067254b3e",
}
ROWS = {"corpus": 12, "korsts_train": 5749, "korsts_dev": 1500, "korsts_test": 1379, "klue_dev": 519,
        "kornli_mnli": 2490, "kornli_snli": 5010}


def _params(shared: Path, **sha_overrides: str) -> dict:
    sources = {}
    for key, rel in FILES.items():
        sha = PINNED[key]["sha256"] if key in BENCHMARKS else None
        sources[key] = {"url": str(shared / rel), "revision": PINNED[key]["revision"],
                        "sha256": sha_overrides.get(key, sha)}
    real = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    return {"sources": sources, "corpus": real["corpus"], "triplets": real["triplets"]}


def _download(project: Path):
    return run_module("stages.download", "--out", "data/raw", "--params", "params.yaml", cwd=project, timeout=120)


@pytest.fixture(scope="module")
def real_raw(tmp_path_factory):
    """A project (in tmp) whose download stage read the shared files in place; returns (project, result)."""
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip("real benchmark files (../shared/data) not available")
    project = tmp_path_factory.mktemp("real")
    (project / "params.yaml").write_text(yaml.safe_dump(_params(SHARED_DATA)), encoding="utf-8")
    return project, _download(project)


def test_download_stage_verifies_and_counts_the_real_files(shared_data, real_raw):
    project, result = real_raw
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    manifest = json.loads((project / "data" / "raw" / "manifest.json").read_text(encoding="utf-8"))["files"]
    assert {key: entry["rows"] for key, entry in manifest.items()} == ROWS
    for key in BENCHMARKS:
        assert manifest[key]["sha256"] == PINNED[key]["sha256"], key
        assert manifest[key]["sha256_pinned"] is True
    for key, sha in PROVENANCE_SHA.items():
        assert manifest[key]["sha256"] == sha, key
        assert manifest[key]["sha256_pinned"] is False
    for key, rel in FILES.items():
        copied = project / "data" / "raw" / manifest[key]["file"]
        assert copied.read_bytes() == (shared_data / rel).read_bytes(), key
        assert manifest[key]["bytes"] == (shared_data / rel).stat().st_size
    assert manifest["corpus"]["blank_lines"] == 0


def test_default_csv_quoting_loses_korsts_rows(shared_data):
    """The trap: with default quoting a sentence that opens a `"` swallows the rows after it."""
    path = shared_data / "kornlu" / "sts-train.tsv"
    assert len(read_korsts(path)) == 5749
    assert len(pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE)) == 5749
    # pandas' default quoting: a parse error, or 5696 rows once bad lines are skipped
    with pytest.raises(pd.errors.ParserError):
        pd.read_csv(path, sep="\t")
    assert len(pd.read_csv(path, sep="\t", on_bad_lines="skip")) == 5696
    # the csv module's default quoting merges rows instead (the hub's kor_nlu script numbers)
    with open(path, encoding="utf-8", newline="") as handle:
        assert sum(1 for _ in csv.reader(handle, delimiter="\t")) - 1 == 5703


@pytest.mark.parametrize("name, rows", [("sts-train.tsv", 5749), ("sts-dev.tsv", 1500), ("sts-test.tsv", 1379)])
def test_read_korsts_matches_quote_none(shared_data, name, rows):
    path = shared_data / "kornlu" / name
    sts = read_korsts(path)
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype={"sentence1": str, "sentence2": str},
                        keep_default_na=False)
    assert len(sts) == len(frame) == rows
    assert sts.sentence1 == frame["sentence1"].tolist()
    assert sts.sentence2 == frame["sentence2"].tolist()
    np.testing.assert_array_equal(sts.scores, frame["score"].to_numpy(dtype=np.float64))
    assert sts.scores.min() >= 0 and sts.scores.max() <= 5
    card = read_korsts(path, strip_punct=True)
    assert not any(ch in s for s in card.sentence1 + card.sentence2 for ch in ",'\"")


def test_klue_label_is_real_label_rounded(shared_data):
    path = shared_data / "klue-sts" / "klue-sts-v1.1_dev.json"
    records = json.loads(path.read_text(encoding="utf-8"))
    assert len(records) == 519
    assert all(r["labels"]["label"] == round(r["labels"]["real-label"], 1) for r in records)
    label = read_klue_sts(path, label_key="label")
    real = read_klue_sts(path, label_key="real-label")
    assert len(label) == len(real) == 519
    np.testing.assert_array_equal(label.scores, np.round(real.scores, 1))
    assert not np.array_equal(label.scores, real.scores)  # the two protocols do differ


@pytest.mark.parametrize("name, rows, per_label", [("xnli.dev.ko.tsv", 2490, 830), ("xnli.test.ko.tsv", 5010, 1670)])
def test_read_kornli_on_xnli(shared_data, name, rows, per_label):
    nli = read_kornli(shared_data / "kornlu" / name)
    assert len(nli) == rows
    assert Counter(r.label for r in nli) == {"entailment": per_label, "neutral": per_label,
                                              "contradiction": per_label}
    triplets = build_triplets(nli, "card")
    assert 0 < len(triplets) <= per_label
    assert triplets.pairs_read == rows


def test_wrong_pinned_sha256_fails_with_one_line(shared_data, real_raw, tmp_path):
    good, first = real_raw
    assert first.returncode == 0, first.stderr
    project = tmp_path / "project"
    shutil.copytree(good, project)
    before = {p: p.read_bytes() for p in sorted((project / "data").rglob("*")) if p.is_file()}
    wrong = PINNED["korsts_test"]["sha256"][::-1]
    (project / "params.yaml").write_text(yaml.safe_dump(_params(shared_data, korsts_test=wrong)), encoding="utf-8")
    result = _download(project)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {shared_data / 'kornlu' / 'sts-test.tsv'}: sha256 mismatch: expected {wrong}, "
                     f"got {PINNED['korsts_test']['sha256']}; file not kept"]
    assert {p: p.read_bytes() for p in sorted((project / "data").rglob("*")) if p.is_file()} == before
