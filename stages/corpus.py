"""Stage `corpus`: the unsupervised training sentences, one per line.

    python -m stages.corpus --raw data/raw --out data/train/wiki

`corpus.from` picks what they are built from:

* ``wiki``: the card's Korean Wiki Text 1M (``sources.corpus``), in file order,
  blank lines skipped and counted;
* ``korsts_xnli``: the distinct sentences (exact strings) of KorSTS train and
  XNLI-ko dev, sentence1 and sentence2, shuffled with `corpus.seed` (the CPU
  rehearsal; never a test set).

`corpus.max_sentences` keeps only the first N (null: all). Writes
data/train/wiki/sentences.txt and manifest.json (what was read, what was kept,
each source's sha256).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_dir, write_json
from pipeline.data import distinct_sentences, read_corpus, read_kornli, read_korsts
from pipeline.errors import UserError, cli_entry
from pipeline.params import Params, check_choice, check_positive_int
from pipeline.provenance import Timer, write_timing
from pipeline.sources import CORPUS_FROM, file_name


@dataclass(frozen=True)
class CorpusConfig:
    source: str  # a key of CORPUS_FROM
    max_sentences: int | None
    seed: int


def read_params(params: Params) -> CorpusConfig:
    src = params.source
    cap = params.get("corpus.max_sentences")
    seed = params.get("corpus.seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserError(f"{src}: corpus.seed = {seed!r}: expected an integer")
    return CorpusConfig(
        source=check_choice(src, "corpus.from", params.get("corpus.from"), CORPUS_FROM),
        max_sentences=None if cap is None else check_positive_int(src, "corpus.max_sentences", cap),
        seed=seed,
    )


def sentences_from(cfg: CorpusConfig, raw: Path) -> tuple[list[str], dict]:
    """The corpus sentences before the cap, and what the manifest records about reading them."""
    if cfg.source == "wiki":
        corpus = read_corpus(raw / file_name("corpus"))
        return corpus.sentences, {"sentences_read": len(corpus.sentences), "blank_lines_skipped": corpus.blank_lines}
    korsts = read_korsts(raw / file_name("korsts_train"))
    xnli = read_kornli(raw / file_name("xnli_dev"))
    pairs = list(zip(korsts.sentence1, korsts.sentence2)) + [(r.premise, r.hypothesis) for r in xnli]
    unique, read = distinct_sentences(pairs)
    # a fixed shuffle, so that a capped corpus samples both sources
    order = np.random.default_rng(cfg.seed).permutation(len(unique))
    return [unique[i] for i in order], {"sentences_read": read, "distinct": len(unique), "seed": cfg.seed}


def build(cfg: CorpusConfig, raw: Path, out: Path) -> dict:
    """Write ``out/sentences.txt`` and ``out/manifest.json``; return the manifest."""
    sentences, facts = sentences_from(cfg, raw)
    kept = sentences[:cfg.max_sentences] if cfg.max_sentences else sentences
    files = json.loads((raw / "manifest.json").read_text(encoding="utf-8"))["files"]
    manifest = {"kind": "wiki", "from": cfg.source, **facts, "max_sentences": cfg.max_sentences,
                "sentences": len(kept), "sources": {key: files[key]["sha256"] for key in CORPUS_FROM[cfg.source]}}
    with atomic_dir(out) as tmp:
        (tmp / "sentences.txt").write_text("\n".join(kept) + "\n", encoding="utf-8")
        write_json(tmp / "manifest.json", manifest)
    print(f"corpus ({cfg.source}): {len(kept)} sentences kept of {len(sentences)}", flush=True)
    return manifest


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timing", type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with Timer() as timer:
        build(read_params(Params.load(args.params)), args.raw, args.out)
    write_timing(args.timing, "corpus", timer.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
