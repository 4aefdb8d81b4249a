"""Stage `triplets`: supervised (premise, entailment, contradiction) triplets from NLI pairs.

    python -m stages.triplets --raw data/raw --out data/train/nli

Reads the NLI files `triplets.from` names (``kornli_train``: KorNLI multinli +
snli train, as the card; ``xnli_test``: XNLI-ko test, the CPU rehearsal), all
tab-separated with no quoting, and builds triplets with `triplets.recipe`
(``card``: the card's notebook, 277,811 triplets from 942,854 KorNLI pairs).
`triplets.max_triplets` keeps only the first N (null: all). Writes triplets.tsv
(anchor, positive, negative) and manifest.json (pairs read, triplets, n/a
dropped, recipe, source).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.data import build_triplets, read_kornli
from pipeline.provenance import Timer, write_timing
from pipeline.errors import cli_entry
from pipeline.params import Params, check_choice, check_positive_int
from pipeline.sources import TRIPLETS_FROM, file_name

RECIPES = ("card", "all")


@dataclass(frozen=True)
class TripletsConfig:
    recipe: str
    source: str  # a key of TRIPLETS_FROM
    max_triplets: int | None


def read_params(params: Params) -> TripletsConfig:
    src = params.source
    cap = params.get("triplets.max_triplets")
    return TripletsConfig(
        recipe=check_choice(src, "triplets.recipe", params.get("triplets.recipe"), RECIPES),
        source=check_choice(src, "triplets.from", params.get("triplets.from"), TRIPLETS_FROM),
        max_triplets=None if cap is None else check_positive_int(src, "triplets.max_triplets", cap),
    )


def build(raw: Path, out: Path, cfg: TripletsConfig) -> dict:
    rows = [row for key in TRIPLETS_FROM[cfg.source] for row in read_kornli(raw / file_name(key))]
    triplets = build_triplets(rows, cfg.recipe)
    kept = list(zip(triplets.anchor, triplets.positive, triplets.negative))[:cfg.max_triplets]
    manifest = {"kind": "nli", "from": cfg.source, "recipe": cfg.recipe, "pairs_read": triplets.pairs_read,
                "built": len(triplets), "max_triplets": cfg.max_triplets, "triplets": len(kept),
                "dropped_na": triplets.dropped_na}
    with atomic_dir(out) as tmp:
        lines = ["\t".join(t) for t in kept]
        (tmp / "triplets.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        write_json(tmp / "manifest.json", manifest)
    print(f"triplets ({cfg.recipe}, {cfg.source}): {len(kept)} kept of {len(triplets)} from "
          f"{triplets.pairs_read} pairs, {triplets.dropped_na} dropped for n/a", flush=True)
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
