"""Stage `corpus`: the unsupervised training sentences, one per line, blank lines counted.

    python -m stages.corpus --raw data/raw --out data/train/wiki

Writes data/train/wiki/sentences.txt and manifest.json (sentences kept, blank
lines skipped, the source's sha256).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.data import read_corpus
from pipeline.provenance import Timer, write_timing
from pipeline.errors import cli_entry
from pipeline.sources import file_name


def build(raw: Path, out: Path) -> dict:
    corpus = read_corpus(raw / file_name("corpus"))
    source = json.loads((raw / "manifest.json").read_text(encoding="utf-8"))["files"]["corpus"]
    manifest = {"kind": "wiki", "sentences": len(corpus.sentences), "blank_lines_skipped": corpus.blank_lines,
                "source_sha256": source["sha256"]}
    with atomic_dir(out) as tmp:
        (tmp / "sentences.txt").write_text("\n".join(corpus.sentences) + "\n", encoding="utf-8")
        write_json(tmp / "manifest.json", manifest)
    print(f"corpus: {manifest['sentences']} sentences, {corpus.blank_lines} blank lines skipped", flush=True)
    return manifest


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timing", type=Path)
    args = parser.parse_args(argv)
    with Timer() as timer:
        build(args.raw, args.out)
    write_timing(args.timing, "corpus", timer.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
