"""Parsers for the corpus, KorSTS, KLUE-STS and KorNLI, and the supervised triplets.

Every parser reads bytes itself, so a bad file is reported with its line (or
record) number and what was expected, in one line, before any model is loaded.
BOMs and CRLF line endings are accepted and normalised.

Format traps handled on purpose (checked on the real files):
* KorSTS and KorNLI are tab-separated with literal ``"`` characters inside
  sentences; they are split on tabs only (the equivalent of
  ``csv.QUOTE_NONE``). Default CSV quoting merges rows: KorSTS train 5749 -> 5696.
* KorSTS dev and test have no final newline.
* KLUE-STS ``labels.label`` is ``labels.real-label`` rounded to one decimal; the
  card's evaluation used ``label``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from pipeline.errors import UserError

KORSTS_HEADER = ("genre", "filename", "year", "id", "score", "sentence1", "sentence2")
KORNLI_HEADER = ("sentence1", "sentence2", "gold_label")
NLI_LABELS = ("entailment", "neutral", "contradiction")
#: Characters the card's evaluation code deleted from KorSTS sentences before encoding.
CARD_STRIP_CHARS = (",", "'", '"')
#: Characters the card's triplet builder deleted from KorNLI sentences.
CARD_NLI_STRIP_CHARS = ('"', "'")


@dataclass(frozen=True)
class StsSet:
    """Scored sentence pairs. ``scores`` is float64 of shape (N,)."""

    name: str
    sentence1: list[str]
    sentence2: list[str]
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def _lines(path: Path | str) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) of a UTF-8 file; BOM and CR removed.

    A final empty line (the file's final newline) is not yielded. Non-UTF-8
    bytes are a :class:`UserError` naming the line and byte.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    for number, chunk in enumerate(chunks, start=1):
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        try:
            yield number, chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"{path}:{number}: not valid UTF-8 (byte 0x{chunk[exc.start]:02x} at column {exc.start + 1}); "
                "expected a UTF-8 text file"
            ) from None


def text_lines(text: str) -> list[str]:
    """Split the text of a file this pipeline wrote (one row per line) at ``\n`` only.

    ``str.splitlines()`` also breaks at U+2028, U+2029, U+0085, ``\x0b``, ``\x0c``,
    ``\x1c``-``\x1e`` and ``\r``: a sentence holding one would become two rows. A
    final newline does not make an extra empty line. Read the file with
    :func:`read_rows_text` (no newline translation).
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_rows_text(path: Path | str) -> list[str]:
    """The rows of a UTF-8 file this pipeline wrote, split by :func:`text_lines` (bytes as written:
    text mode would turn a ``\r`` inside a sentence into a line break)."""
    return text_lines(Path(path).read_bytes().decode("utf-8"))


def strip_chars(text: str, chars: tuple[str, ...]) -> str:
    """Delete every occurrence of each character in ``chars`` from ``text``."""
    for ch in chars:
        text = text.replace(ch, "")
    return text


def read_korsts(path: Path | str, *, strip_punct: bool = False, name: str = "korsts") -> StsSet:
    """Read a KorSTS TSV (header ``genre filename year id score sentence1 sentence2``).

    Args:
        path: the TSV file.
        strip_punct: delete ``,`` ``'`` ``"`` from both sentences, as the card's
            evaluation did (``protocol: card``).
        name: label for the returned set.

    Returns:
        :class:`StsSet` with scores in [0, 5].

    Raises:
        UserError: on a different header, a row without exactly 7 tab-separated
            fields, a non-numeric score or one outside [0, 5], an empty sentence,
            non-UTF-8 bytes, or a file with no rows.
    """
    path = Path(path)
    s1: list[str] = []
    s2: list[str] = []
    scores: list[float] = []
    lines = _lines(path)
    header = next(lines, None)
    if header is None:
        raise UserError(f"{path}: empty file; expected a KorSTS TSV with header {' '.join(KORSTS_HEADER)}")
    if tuple(header[1].split("\t")) != KORSTS_HEADER:
        raise UserError(f"{path}:1: header is {header[1]!r}; expected the tab-separated KorSTS header "
                        f"{chr(9).join(KORSTS_HEADER)!r}")
    for number, line in lines:
        fields = line.split("\t")
        if len(fields) != len(KORSTS_HEADER):
            raise UserError(f"{path}:{number}: expected {len(KORSTS_HEADER)} tab-separated fields "
                            f"({' '.join(KORSTS_HEADER)}), found {len(fields)}")
        raw_score, a, b = fields[4], fields[5], fields[6]
        try:
            score = float(raw_score)
        except ValueError:
            raise UserError(f"{path}:{number}: score {raw_score!r} is not a number; expected a float in [0, 5]") from None
        if not (0.0 <= score <= 5.0):  # also rejects nan
            raise UserError(f"{path}:{number}: score {raw_score} is outside [0, 5]")
        for col, text in (("sentence1", a), ("sentence2", b)):
            if not text.strip():
                raise UserError(f"{path}:{number}: {col} is empty; expected a sentence")
        if strip_punct:
            a, b = strip_chars(a, CARD_STRIP_CHARS), strip_chars(b, CARD_STRIP_CHARS)
        s1.append(a)
        s2.append(b)
        scores.append(score)
    if not scores:
        raise UserError(f"{path}: no data rows after the header")
    return StsSet(name, s1, s2, np.asarray(scores, dtype=np.float64))


def read_klue_sts(path: Path | str, *, label_key: str = "label", name: str = "klue") -> StsSet:
    """Read KLUE-STS JSON (a list of records with ``guid``, ``sentence1``, ``sentence2``, ``labels``).

    Args:
        path: the JSON file.
        label_key: ``"label"`` (one decimal, what the card used) or ``"real-label"``
            (the annotators' mean).
        name: label for the returned set.

    Raises:
        UserError: invalid JSON, a record without ``guid``/``sentence1``/
            ``sentence2``/``labels``/the label, a ``guid`` that is not a string,
            a label outside [0, 5], an empty sentence, or a duplicate ``guid``.
    """
    path = Path(path)
    text = "\n".join(line for _, line in _lines(path))
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    if not isinstance(records, list) or not records:
        raise UserError(f"{path}: expected a non-empty JSON array of KLUE-STS records")
    seen: set[str] = set()
    s1, s2, scores = [], [], []
    for index, record in enumerate(records):
        where = f"{path}: record {index}"
        if not isinstance(record, dict):
            raise UserError(f"{where}: expected a JSON object")
        for key in ("guid", "sentence1", "sentence2", "labels"):
            if key not in record:
                raise UserError(f"{where}: missing '{key}'")
        guid = record["guid"]
        if not isinstance(guid, str) or not guid:
            raise UserError(f"{where}: guid = {guid!r}: expected a non-empty string")
        where = f"{path}: record {index} (guid {guid})"
        if guid in seen:
            raise UserError(f"{where}: duplicate guid; expected each guid once")
        seen.add(guid)
        labels = record["labels"]
        if not isinstance(labels, dict) or label_key not in labels:
            raise UserError(f"{where}: missing 'labels.{label_key}'")
        value = labels[label_key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 5.0):
            raise UserError(f"{where}: labels.{label_key} = {value!r} is outside [0, 5]")
        for key in ("sentence1", "sentence2"):
            if not isinstance(record[key], str) or not record[key].strip():
                raise UserError(f"{where}: {key} is empty; expected a sentence")
        s1.append(record["sentence1"])
        s2.append(record["sentence2"])
        scores.append(float(value))
    return StsSet(name, s1, s2, np.asarray(scores, dtype=np.float64))


def load_benchmark(kind: str, path: Path | str, protocol: str, name: str | None = None) -> StsSet:
    """Read a benchmark under an evaluation protocol.

    ``protocol="card"`` reproduces the card's evaluation: KorSTS with ``,`` ``'`` ``"``
    deleted, KLUE-STS ``labels.label``. ``protocol="clean"`` uses the sentences as
    published and KLUE-STS ``labels.real-label``.

    Args:
        kind: ``"korsts"`` or ``"klue"``.
    """
    if protocol not in ("card", "clean"):
        raise UserError(f"protocol = {protocol!r}: expected card or clean")
    if kind == "korsts":
        return read_korsts(path, strip_punct=protocol == "card", name=name or "korsts")
    if kind == "klue":
        return read_klue_sts(path, label_key="label" if protocol == "card" else "real-label", name=name or "klue")
    raise ValueError(f"unknown benchmark kind {kind!r}")


@dataclass(frozen=True)
class Corpus:
    """Sentences of a one-sentence-per-line corpus, and how many blank lines were skipped."""

    sentences: list[str]
    blank_lines: int


def read_corpus(path: Path | str) -> Corpus:
    """Read a one-sentence-per-line corpus; surrounding whitespace is stripped, blank lines skipped.

    The lines are those of Python's text-mode ``readlines()``, which the card's
    reader used: split at ``\n``, ``\r\n`` and a lone ``\r`` only.

    Raises:
        UserError: the file is empty or holds only blank lines, or is not UTF-8.
    """
    sentences: list[str] = []
    blank = 0
    for _, raw_line in _lines(path):
        # the card read the corpus with readlines() in text mode: lines end at \n, \r\n or a lone \r
        # (universal newlines), never at U+2028, U+0085, \x0b ... as str.splitlines() would
        for line in raw_line.split("\r"):
            line = line.strip()
            if line:
                sentences.append(line)
            else:
                blank += 1
    if not sentences:
        raise UserError(f"{path}: the corpus has no sentences (empty or only blank lines); "
                        "expected one sentence per line")
    return Corpus(sentences, blank)


def distinct_sentences(pairs: Iterable[tuple[str, str]]) -> tuple[list[str], int]:
    """Every distinct sentence of sentence pairs (exact strings), in first-seen order.

    Returns:
        (the distinct sentences, how many sentences were read: 2 per pair).
    """
    seen: dict[str, None] = {}
    read = 0
    for a, b in pairs:
        seen.setdefault(a)
        seen.setdefault(b)
        read += 2
    return list(seen), read


@dataclass(frozen=True)
class NliRow:
    premise: str
    hypothesis: str
    label: str


def read_kornli(path: Path | str) -> list[NliRow]:
    """Read a KorNLI TSV (header ``sentence1 sentence2 gold_label``).

    Lines are whitespace-stripped before splitting on tabs, as the hub's
    ``kor_nli`` loader (the card's source of triplets) did.

    Raises:
        UserError: a different header, a row without 3 fields, a ``gold_label``
            other than entailment / neutral / contradiction, or no rows.
    """
    path = Path(path)
    lines = _lines(path)
    header = next(lines, None)
    if header is None or tuple(header[1].strip().split("\t")) != KORNLI_HEADER:
        found = "nothing" if header is None else repr(header[1])
        raise UserError(f"{path}:1: header is {found}; expected {chr(9).join(KORNLI_HEADER)!r}")
    rows: list[NliRow] = []
    for number, line in lines:
        fields = line.strip().split("\t")
        if len(fields) != 3:
            raise UserError(f"{path}:{number}: expected 3 tab-separated fields (sentence1 sentence2 gold_label), "
                            f"found {len(fields)}")
        if fields[2] not in NLI_LABELS:
            raise UserError(f"{path}:{number}: unknown gold_label {fields[2]!r}; expected one of "
                            f"{', '.join(NLI_LABELS)}")
        rows.append(NliRow(fields[0], fields[1], fields[2]))
    if not rows:
        raise UserError(f"{path}: no data rows after the header")
    return rows


@dataclass(frozen=True)
class Triplets:
    """Supervised training triplets and how they were built."""

    anchor: list[str]
    positive: list[str]
    negative: list[str]
    pairs_read: int
    dropped_na: int

    def __len__(self) -> int:
        return len(self.anchor)


def build_triplets(rows: list[NliRow], recipe: str = "card") -> Triplets:
    """Build (premise, entailment, contradiction) triplets from NLI rows.

    Recipes:
        ``card``: the card's notebook. Per premise, the *last* entailment and the
        *last* contradiction (later rows overwrite earlier ones); premises in the
        order their first entailment appears; ``"`` and ``'`` deleted from all
        three sentences; a triplet with any sentence equal to ``n/a`` (after
        deletion) dropped. On KorNLI multinli + snli train (942,854 pairs) it gives
        277,811 triplets.

        ``all``: every (entailment, contradiction) combination of a premise, in
        file order, sentences unchanged, ``n/a`` rows dropped; more data, as in the
        SimCSE paper's use of every NLI pair.

    Returns:
        :class:`Triplets`.
    """
    if recipe == "card":
        entail: dict[str, str] = {}
        contra: dict[str, str] = {}
        for row in rows:
            if row.label == "entailment":
                entail[row.premise] = row.hypothesis
            elif row.label == "contradiction":
                contra[row.premise] = row.hypothesis
        a, p, n = [], [], []
        dropped = 0
        for premise, hyp in entail.items():
            if premise not in contra:
                continue
            clean = [strip_chars(t, CARD_NLI_STRIP_CHARS) for t in (premise, hyp, contra[premise])]
            if "n/a" in clean:
                dropped += 1
                continue
            a.append(clean[0])
            p.append(clean[1])
            n.append(clean[2])
        return Triplets(a, p, n, pairs_read=len(rows), dropped_na=dropped)
    if recipe == "all":
        by_premise: dict[str, tuple[list[str], list[str]]] = {}
        dropped = 0
        for row in rows:
            if "n/a" in (row.premise, row.hypothesis):
                dropped += 1
                continue
            ents, cons = by_premise.setdefault(row.premise, ([], []))
            if row.label == "entailment":
                ents.append(row.hypothesis)
            elif row.label == "contradiction":
                cons.append(row.hypothesis)
        a, p, n = [], [], []
        for premise, (ents, cons) in by_premise.items():
            for e in ents:
                for c in cons:
                    a.append(premise)
                    p.append(e)
                    n.append(c)
        return Triplets(a, p, n, pairs_read=len(rows), dropped_na=dropped)
    raise UserError(f"triplets.recipe = {recipe!r}: expected card or all")
