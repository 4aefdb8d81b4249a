"""Stage `triplets`: supervised (premise, entailment, contradiction) triplets from KorNLI train.

    python -m stages.triplets --raw data/raw --out data/train/nli

Reads KorNLI multinli + snli train (tab-separated, no quoting) and builds
triplets with `triplets.recipe` (``card``: the card's notebook, 277,811 triplets
from 942,854 pairs). Writes triplets.tsv (anchor, positive, negative) and
manifest.json (pairs read, triplets, n/a dropped, recipe).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.data import build_triplets, read_kornli
from pipeline.provenance import Timer, write_timing
from pipeline.errors import cli_entry
from pipeline.params import Params, check_choice
from pipeline.sources import file_name

RECIPES = ("card", "all")


def read_params(params: Params) -> str:
    return check_choice(params.source, "triplets.recipe", params.get("triplets.recipe"), RECIPES)


def build(raw: Path, out: Path, recipe: str) -> dict:
    rows = read_kornli(raw / file_name("kornli_mnli")) + read_kornli(raw / file_name("kornli_snli"))
    triplets = build_triplets(rows, recipe)
    manifest = {"kind": "nli", "recipe": recipe, "pairs_read": triplets.pairs_read,
                "triplets": len(triplets), "dropped_na": triplets.dropped_na}
    with atomic_dir(out) as tmp:
        lines = ["\t".join(t) for t in zip(triplets.anchor, triplets.positive, triplets.negative)]
        (tmp / "triplets.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        write_json(tmp / "manifest.json", manifest)
    print(f"triplets ({recipe}): {len(triplets)} from {triplets.pairs_read} pairs, "
          f"{triplets.dropped_na} dropped for n/a", flush=True)
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
        build(args.raw, args.out, read_params(Params.load(args.params)))
    write_timing(args.timing, "triplets", timer.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
