"""Tests for the synthetic smoke data: formats, format traps, label consistency, determinism
and whether the STS scores carry a signal a model can learn from the text."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from pipeline.smoke_data import FILE_NAMES, write_smoke_sources

KORSTS = ("korsts_train", "korsts_dev", "korsts_test")
KORSTS_HEADER = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"
GENRE_OF = {"MSRvid": "main-captions", "images": "main-captions", "headlines": "main-news",
            "answers-forums": "main-forum", "deft-forum": "main-forum"}
KLUE_SOURCES = {"airbnb-rtt", "airbnb-sampled", "policy-rtt", "policy-sampled", "paraKQC-para", "paraKQC-sampled"}
NLI_LABELS = {"entailment", "neutral", "contradiction"}


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    return write_smoke_sources(tmp_path_factory.mktemp("smoke"), seed=0)


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def _korsts_rows(path: Path) -> list[list[str]]:
    lines = _text(path).split("\n")
    assert lines[0] == KORSTS_HEADER
    if lines[-1] == "":
        lines.pop()
    return [line.split("\t") for line in lines[1:]]


def _nli_rows(path: Path) -> list[list[str]]:
    text = _text(path)
    assert text.endswith("\n")
    lines = text[:-1].split("\n")
    assert lines[0] == "sentence1\tsentence2\tgold_label"
    return [line.split("\t") for line in lines[1:]]


def _words(sentence: str) -> set[str]:
    return set(re.sub(r"[^\w\s]", "", sentence).split())


def test_returns_every_named_file(paths, tmp_path):
    assert {k: p.name for k, p in paths.items()} == FILE_NAMES
    assert all(p.is_file() for p in paths.values())
    nested = tmp_path / "a" / "b"
    assert write_smoke_sources(nested)["corpus"].parent == nested


def test_corpus_lines(paths):
    text = _text(paths["corpus"])
    assert text.endswith("\n") and "\r" not in text and "\t" not in text
    lines = text[:-1].split("\n")
    assert all(line.strip() == line and line for line in lines)
    assert len(set(lines)) == len(lines) >= 2400
    lengths = [len(line) for line in lines]
    assert sum(8 <= n <= 40 for n in lengths) / len(lengths) >= 0.7
    assert max(lengths) <= 120 and sum(n > 60 for n in lengths) >= 50
    hangul = sum(1 for ch in text if "\uac00" <= ch <= "\ud7a3")
    assert hangul / len(text) > 0.6


@pytest.mark.parametrize("name,minimum,final_newline",
                         [("korsts_train", 400, True), ("korsts_dev", 250, False), ("korsts_test", 250, False)])
def test_korsts_format(paths, name, minimum, final_newline):
    path = paths[name]
    assert _text(path).endswith("\n") is final_newline
    rows = _korsts_rows(path)
    assert len(rows) >= minimum
    ids = Counter()
    for row in rows:
        assert len(row) == 7, row
        genre, filename, year, ident, score, s1, s2 = row
        assert GENRE_OF[filename] == genre
        assert re.fullmatch(r"2012(test|train)|201[3-6]", year)
        assert re.fullmatch(r"\d{4}", ident)
        assert re.fullmatch(r"\d\.\d{3}", score) and 0.0 <= float(score) <= 5.0
        assert s1.strip() and s2.strip() and "\n" not in s1 + s2
        ids[(filename, year, ident)] += 1
    assert max(ids.values()) == 1
    joined = "".join(r[5] + r[6] for r in rows)
    assert "," in joined and "'" in joined and '"' in joined


@pytest.mark.parametrize("name", KORSTS)
def test_korsts_default_csv_quoting_merges_rows(paths, name):
    text = _text(paths[name])
    default = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t"))
    none = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert len(none) == len(_korsts_rows(paths[name])) + 1
    assert len(default) < len(none)
    # The trap is a sentence that opens a quote and never closes it.
    assert any(r[5].startswith('"') and r[5].count('"') == 1 for r in _korsts_rows(paths[name]))


def test_korsts_scores_spread_and_learnable(paths):
    test_scores = [float(r[4]) for r in _korsts_rows(paths["korsts_test"])]
    assert sum(s < 1.5 for s in test_scores) / len(test_scores) >= 0.15
    assert sum(s > 3.5 for s in test_scores) / len(test_scores) >= 0.15
    assert any(s != int(s) for s in test_scores)
    # Every unit bin of the 0-5 range holds at least 10% of the pairs.
    bins = Counter(min(int(s), 4) for s in test_scores)
    assert all(bins[b] / len(test_scores) >= 0.10 for b in range(5))

    rows = [r for name in KORSTS for r in _korsts_rows(paths[name])]

    def overlap(r):
        a, b = _words(r[5]), _words(r[6])
        return len(a & b) / len(a | b)

    high = [overlap(r) for r in rows if float(r[4]) >= 4.5]
    low = [overlap(r) for r in rows if float(r[4]) <= 1.0]
    assert len(high) >= 50 and len(low) >= 50
    assert sum(high) / len(high) > sum(low) / len(low) + 0.2


def test_korsts_splits_disjoint(paths):
    pairs = {name: {(r[5], r[6]) for r in _korsts_rows(paths[name])} for name in KORSTS}
    for name in KORSTS:
        assert len(pairs[name]) == len(_korsts_rows(paths[name]))
    assert not pairs["korsts_train"] & pairs["korsts_dev"]
    assert not pairs["korsts_train"] & pairs["korsts_test"]
    assert not pairs["korsts_dev"] & pairs["korsts_test"]


def test_klue_records(paths):
    text = _text(paths["klue_dev"])
    records = json.loads(text)
    assert len(records) >= 250
    assert '"sentence1": "' in text and "\\u" not in text  # written with ensure_ascii=False
    guids = [r["guid"] for r in records]
    assert len(set(guids)) == len(guids)
    assert guids[:2] == ["klue-sts-v1_dev_00000", "klue-sts-v1_dev_00001"]
    for r in records:
        assert list(r) == ["guid", "source", "sentence1", "sentence2", "labels", "annotations"]
        assert r["source"] in KLUE_SOURCES
        labels, ann = r["labels"], r["annotations"]
        assert list(labels) == ["label", "real-label", "binary-label"]
        votes = ann["annotations"]
        assert 3 <= len(votes) <= 7 and all(isinstance(v, int) and 0 <= v <= 5 for v in votes)
        assert labels["real-label"] == pytest.approx(sum(votes) / len(votes), abs=1e-12)
        assert labels["label"] == round(labels["real-label"], 1)
        assert labels["binary-label"] == (1 if labels["real-label"] >= 3.0 else 0)
        counts = [int(c) for c in ann["agreement"].split(":")]
        assert counts == [votes.count(v) for v in range(6)]
        assert len(ann["annotators"]) == len(votes) == len(set(ann["annotators"]))
        assert all(re.fullmatch(r"\d{2}", a) for a in ann["annotators"])
    reals = [r["labels"]["real-label"] for r in records]
    assert sum(x < 1.5 for x in reals) / len(reals) >= 0.15 and sum(x > 3.5 for x in reals) / len(reals) >= 0.15


def test_kornli_files(paths):
    rows = _nli_rows(paths["kornli_mnli"]) + _nli_rows(paths["kornli_snli"])
    assert all(len(r) == 3 and r[2] in NLI_LABELS for r in rows)
    assert all(r[0] == r[0].strip() and r[1] == r[1].strip() and r[0] for r in rows)
    assert 2 <= sum(r[1] == "n/a" for r in rows) <= 5
    by_premise: dict[str, list[str]] = {}
    for premise, hyp, label in rows:
        if hyp != "n/a":
            by_premise.setdefault(premise, []).append(label)
    complete = [p for p, labels in by_premise.items() if "entailment" in labels and "contradiction" in labels]
    assert len(complete) >= 400
    assert any(labels.count("entailment") == 2 for labels in by_premise.values())
    assert any(labels.count("contradiction") == 2 for labels in by_premise.values())
    # Rows of one premise are contiguous.
    starts = [p for i, (p, _, _) in enumerate(rows) if i == 0 or rows[i - 1][0] != p]
    assert len(starts) == len(set(starts))
    hyps = "".join(r[0] + r[1] for r in rows)
    assert '"' in hyps and "'" in hyps


def test_deterministic_and_seeded(paths, tmp_path):
    again = write_smoke_sources(tmp_path / "again", seed=0)
    other = write_smoke_sources(tmp_path / "other", seed=1)
    for name, path in paths.items():
        assert again[name].read_bytes() == path.read_bytes(), name
        assert other[name].read_bytes() != path.read_bytes(), name


def test_same_bytes_in_another_process(paths, tmp_path):
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "pipeline.smoke_data", str(out), "--seed", "0"],
                            cwd=root, capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(root), "PYTHONHASHSEED": "123", "PATH": ""})
    assert str(out / FILE_NAMES["korsts_dev"]) in result.stdout
    for name, path in paths.items():
        assert (out / path.name).read_bytes() == path.read_bytes(), name


def test_corpus_covers_benchmark_characters(paths):
    corpus = set(_text(paths["corpus"]))
    bench = "".join(_text(paths[n]) for n in (*KORSTS, "kornli_mnli", "kornli_snli"))
    bench += "".join(r["sentence1"] + r["sentence2"] for r in json.loads(_text(paths["klue_dev"])))
    syllables = sorted({ch for ch in bench if "\uac00" <= ch <= "\ud7a3"})
    assert len(syllables) > 300
    assert [ch for ch in syllables if ch not in corpus] == []


def test_project_parsers_read_the_files(paths):
    data = pytest.importorskip("pipeline.data")
    for name, rows in (("korsts_train", 720), ("korsts_dev", 300), ("korsts_test", 300)):
        assert len(data.read_korsts(paths[name], strip_punct=True)) == rows
    assert len(data.read_klue_sts(paths["klue_dev"], label_key="real-label")) == 300
    assert len(data.read_corpus(paths["corpus"]).sentences) == 3000
    rows = data.read_kornli(paths["kornli_mnli"]) + data.read_kornli(paths["kornli_snli"])
    triplets = data.build_triplets(rows, "card")
    # 480 premises, each with an entailment and a contradiction; the 3 whose last
    # hypothesis of a label is "n/a" are dropped.
    assert (len(triplets), triplets.dropped_na) == (477, 3)
