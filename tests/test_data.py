"""Parsers of pipeline/data.py on tiny hand-written fixtures: KorSTS (quotes, card protocol,
BOM/CRLF, no final newline), KLUE-STS label selection, the corpus, KorNLI, and the triplet recipes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import (build_triplets, load_benchmark, read_corpus, read_klue_sts, read_korsts, read_kornli,
                           NliRow)
from pipeline.errors import UserError

HEADER = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"
# Row 2 opens a `"` it never closes: default CSV quoting reads on into row 3 (the KorSTS trap).
KORSTS_ROWS = [
    "main-captions\tMSRvid\t2012test\t0001\t5.000\t비행기가 이륙하고 있다.\t비행기가 이륙하는 중이다.",
    'main-news\theadlines\t2013\t0002\t3.200\t"그가 떠났다고 말했다.\t그는 떠났다.',
    "main-forum\tdeft-forum\t2014\t0003\t0.500\t'작은' 집, \"큰\" 마당\t다른 문장이다.",
]
S1 = ["비행기가 이륙하고 있다.", '"그가 떠났다고 말했다.', "'작은' 집, \"큰\" 마당"]
S2 = ["비행기가 이륙하는 중이다.", "그는 떠났다.", "다른 문장이다."]
SCORES = [5.0, 3.2, 0.5]


def _write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_korsts_lone_quote_does_not_swallow_next_row(tmp_path):
    text = "\n".join([HEADER, *KORSTS_ROWS]) + "\n"
    path = _write(tmp_path, "sts.tsv", text)
    sts = read_korsts(path)
    assert len(sts) == 3
    assert sts.sentence1 == S1
    assert sts.sentence2 == S2
    np.testing.assert_array_equal(sts.scores, np.array(SCORES))
    assert sts.scores.dtype == np.float64
    # The fixture really is the trap: default CSV quoting merges rows 2 and 3.
    default = list(csv.reader(io.StringIO(text), delimiter="\t"))
    assert len(default) - 1 == 2


def test_korsts_card_protocol_strips_comma_and_quotes(tmp_path):
    path = _write(tmp_path, "sts.tsv", "\n".join([HEADER, *KORSTS_ROWS]))
    card = read_korsts(path, strip_punct=True)
    assert card.sentence1 == ["비행기가 이륙하고 있다.", "그가 떠났다고 말했다.", "작은 집 큰 마당"]
    assert card.sentence2 == S2
    np.testing.assert_array_equal(card.scores, np.array(SCORES))
    # load_benchmark: card strips, clean keeps the published text
    assert load_benchmark("korsts", path, "card").sentence1 == card.sentence1
    assert load_benchmark("korsts", path, "clean").sentence1 == S1


@pytest.mark.parametrize("bom, newline, final", [
    (b"", b"\n", b"\n"),
    (b"\xef\xbb\xbf", b"\n", b"\n"),
    (b"", b"\r\n", b"\r\n"),
    (b"\xef\xbb\xbf", b"\r\n", b"\r\n"),
    (b"", b"\n", b""),
    (b"\xef\xbb\xbf", b"\r\n", b""),
], ids=["lf", "bom", "crlf", "bom-crlf", "no-final-newline", "bom-crlf-no-final-newline"])
def test_korsts_bom_crlf_and_missing_final_newline(tmp_path, bom, newline, final):
    data = bom + newline.join(line.encode("utf-8") for line in [HEADER, *KORSTS_ROWS]) + final
    sts = read_korsts(_write(tmp_path, "sts.tsv", data))
    assert len(sts) == 3
    assert sts.sentence1 == S1
    assert sts.sentence2 == S2  # no trailing "\r" on the last column
    np.testing.assert_array_equal(sts.scores, np.array(SCORES))


KLUE = [
    {"guid": "klue-sts-v1_dev_00000", "source": "airbnb-rtt", "sentence1": "숙소 위치는 찾기 쉬웠어요.",
     "sentence2": "숙소는 찾기 쉬운 곳에 있었어요.", "labels": {"label": 4.3, "real-label": 4.285714285714286,
                                                        "binary-label": 1}},
    {"guid": "klue-sts-v1_dev_00001", "source": "policy-sampled", "sentence1": "정부가 \"새\" 정책을 발표했다.",
     "sentence2": "오늘은 비가 온다.", "labels": {"label": 0.0, "real-label": 0.0, "binary-label": 0}},
    {"guid": "klue-sts-v1_dev_00002", "source": "paraKQC-para", "sentence1": "회의는 몇 시에 시작하나요?",
     "sentence2": "회의 시작 시간이 언제인가요?", "labels": {"label": 3.7, "real-label": 3.6666666666666665,
                                                        "binary-label": 1}},
]


@pytest.mark.parametrize("label_key, protocol, expected", [
    ("label", "card", [4.3, 0.0, 3.7]),
    ("real-label", "clean", [4.285714285714286, 0.0, 3.6666666666666665]),
])
def test_klue_label_selection(tmp_path, label_key, protocol, expected):
    path = _write(tmp_path, "klue.json", json.dumps(KLUE, ensure_ascii=False, indent=4))
    sts = read_klue_sts(path, label_key=label_key)
    assert sts.scores.tolist() == expected
    assert sts.sentence1 == [r["sentence1"] for r in KLUE]  # KLUE sentences are never stripped
    assert sts.sentence2 == [r["sentence2"] for r in KLUE]
    assert load_benchmark("klue", path, protocol).scores.tolist() == expected


def test_klue_bom_and_crlf(tmp_path):
    text = json.dumps(KLUE, ensure_ascii=False, indent=2).replace("\n", "\r\n")
    sts = read_klue_sts(_write(tmp_path, "klue.json", b"\xef\xbb\xbf" + text.encode("utf-8")))
    assert sts.scores.tolist() == [4.3, 0.0, 3.7]


def test_corpus_skips_and_counts_blank_lines(tmp_path):
    path = _write(tmp_path, "corpus.txt", "\ufeff첫 문장이다.\r\n\r\n  둘째 문장이다.  \n \t \n셋째 문장이다.\n\n")
    corpus = read_corpus(path)
    assert corpus.sentences == ["첫 문장이다.", "둘째 문장이다.", "셋째 문장이다."]
    assert corpus.blank_lines == 3  # the final newline itself is not a blank line


def test_kornli_parsing(tmp_path):
    text = ("sentence1\tsentence2\tgold_label\r\n"
            "남자가 공을 찬다.\t남자가 운동을 한다.\tentailment\r\n"
            '남자가 공을 찬다.\t"남자가 잠을 잔다.\tcontradiction\r\n'
            " 여자가 노래한다.\t여자가 무대에 있다.\tneutral \r\n")
    rows = read_kornli(_write(tmp_path, "nli.tsv", b"\xef\xbb\xbf" + text.encode("utf-8")))
    assert rows == [
        NliRow("남자가 공을 찬다.", "남자가 운동을 한다.", "entailment"),
        NliRow("남자가 공을 찬다.", '"남자가 잠을 잔다.', "contradiction"),
        NliRow("여자가 노래한다.", "여자가 무대에 있다.", "neutral"),
    ]


@pytest.mark.parametrize("text, where, expected", [
    ("sentence1\tsentence2\tlabel\n가\t나\tentailment\n", ":1:", "header"),
    ("sentence1\tsentence2\tgold_label\n가\t나\n", ":2:", "expected 3 tab-separated fields"),
    ("sentence1\tsentence2\tgold_label\n가\t나\tentailment\n가\t다\t-\n", ":3:", "unknown gold_label '-'"),
    ("sentence1\tsentence2\tgold_label\n", ":", "no data rows after the header"),
    ("", ":1:", "header is nothing"),
])
def test_kornli_errors_name_the_line(tmp_path, text, where, expected):
    path = _write(tmp_path, "nli.tsv", text)
    with pytest.raises(UserError) as info:
        read_kornli(path)
    message = str(info.value)
    assert message.startswith(f"{path}{where}")
    assert expected in message
    assert "\n" not in message


def _nli(*rows: tuple[str, str, str]) -> list[NliRow]:
    return [NliRow(*row) for row in rows]


# Premise B's first entailment comes before A's, so B leads; later rows overwrite earlier ones.
NLI_SAMPLE = _nli(
    ("A는 \"학생\"이다.", "A는 사람이다.", "neutral"),
    ("B가 달린다.", "B가 움직인다.", "entailment"),
    ("A는 \"학생\"이다.", "A는 공부한다.", "entailment"),
    ("B가 달린다.", "B가 앉아 있다.", "contradiction"),
    ("A는 \"학생\"이다.", "A는 'n/a' 아니다.", "contradiction"),
    ("B가 달린다.", "B가 '빨리' 움직인다.", "entailment"),
    ("A는 \"학생\"이다.", "A는 잠만 잔다.", "contradiction"),
    ("C는 엔트리만 있다.", "C는 있다.", "entailment"),
    ("D가 먹는다.", "n/a", "entailment"),
    ("D가 먹는다.", "D가 굶는다.", "contradiction"),
    ("E가 잔다.", "E가 쉰다.", "entailment"),
    ("E가 잔다.", "\"n/a\"", "contradiction"),
    ("F만 반박이 있다.", "F는 없다.", "contradiction"),
)


def test_build_triplets_card_recipe():
    t = build_triplets(NLI_SAMPLE, "card")
    assert list(zip(t.anchor, t.positive, t.negative)) == [
        ("B가 달린다.", "B가 빨리 움직인다.", "B가 앉아 있다."),   # last entailment wins; ' deleted
        ("A는 학생이다.", "A는 공부한다.", "A는 잠만 잔다."),       # last contradiction wins; " deleted
    ]
    assert len(t) == 2
    assert t.pairs_read == 13
    assert t.dropped_na == 2  # D (n/a entailment) and E ("n/a" becomes n/a once quotes are deleted)


def test_build_triplets_all_recipe():
    t = build_triplets(NLI_SAMPLE, "all")
    # premises in the order they first appear (any label); sentences unchanged
    assert list(zip(t.anchor, t.positive, t.negative)) == [
        ("A는 \"학생\"이다.", "A는 공부한다.", "A는 'n/a' 아니다."),
        ("A는 \"학생\"이다.", "A는 공부한다.", "A는 잠만 잔다."),
        ("B가 달린다.", "B가 움직인다.", "B가 앉아 있다."),
        ("B가 달린다.", "B가 '빨리' 움직인다.", "B가 앉아 있다."),
        ("E가 잔다.", "E가 쉰다.", "\"n/a\""),
    ]
    assert t.pairs_read == 13
    assert t.dropped_na == 1  # only the row whose hypothesis is exactly n/a


def test_build_triplets_unknown_recipe():
    with pytest.raises(UserError, match=r"triplets.recipe = 'every': expected card or all"):
        build_triplets(NLI_SAMPLE, "every")
