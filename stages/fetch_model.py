"""Stage `fetch_model@<variant>`: materialise one variant's base model as a local safetensors folder.

    python -m stages.fetch_model --variant bert-unsup --out data/models/bert-unsup

A hub id is downloaded at its revision in `model_revisions` (a commit, or a
branch that is resolved and recorded with a warning); a local folder is copied.
Writes the model's files and manifest.json (model, source, revision, commit,
sha256 per file) into --out. One output per variant, so a new revision of one
base model reruns only the variants trained from it; variants that share a
base model download it once (the hub client's cache) and DVC stores it once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.errors import UserError, cli_entry
from pipeline.hub import MANIFEST, fetch_model
from pipeline.params import Params
from pipeline.provenance import Timer, write_timing


def read_params(params: Params, variant: str) -> tuple[str, str | None]:
    """(model, revision) of ``variant``'s base model."""
    revisions = params.get("model_revisions") or {}
    if not isinstance(revisions, dict):
        raise UserError(f"{params.source}: model_revisions must map a hub id to a commit or branch")
    model = params.resolved(variant, "model")
    return model, revisions.get(model)


def fetch_one(model: str, revision: str | None, out: Path) -> dict:
    """Fetch ``model`` into ``out`` (atomically) with its manifest record; return the record."""
    with atomic_dir(out) as tmp:
        record = {"model": model, **fetch_model(model, revision, tmp)}
        write_json(tmp / MANIFEST, record)
    print(f"{model}: {record['kind']} (commit {record['commit']}) -> {out}", flush=True)
    return record


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timing", type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with Timer() as timer:
        fetch_one(*read_params(Params.load(args.params), args.variant), args.out)
    write_timing(args.timing, f"fetch_model@{args.variant}", timer.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
