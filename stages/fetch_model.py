"""Stage `fetch_model`: materialise every variant's base model as a local safetensors folder.

    python -m stages.fetch_model --out data/models

A hub id is downloaded at its revision in `model_revisions` (a commit, or a
branch that is resolved and recorded with a warning); a local folder is copied.
Writes data/models/<slug>/ per distinct model and data/models/manifest.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.provenance import Timer, write_timing
from pipeline.errors import UserError, cli_entry
from pipeline.hub import fetch_model, model_slug
from pipeline.params import Params


def read_params(params: Params) -> dict[str, str | None]:
    """{model: revision} for the distinct models of all variants, in variant order."""
    revisions = params.get("model_revisions") or {}
    if not isinstance(revisions, dict):
        raise UserError(f"{params.source}: model_revisions must map a hub id to a commit or branch")
    models: dict[str, str | None] = {}
    for name in params.variant_names():
        model = params.resolved(name, "model")
        models.setdefault(model, revisions.get(model))
    return models


def fetch_all(models: dict[str, str | None], out: Path) -> dict:
    with atomic_dir(out) as tmp:
        manifest = {}
        for model, revision in models.items():
            slug = model_slug(model)
            record = fetch_model(model, revision, tmp / slug)
            manifest[slug] = {"model": model, **record}
            print(f"{model}: {record['kind']} -> {slug} (commit {record['commit']})", flush=True)
        write_json(tmp / "manifest.json", manifest)
    return manifest


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timing", type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with Timer() as timer:
        fetch_all(read_params(Params.load(args.params)), args.out)
    write_timing(args.timing, "fetch_model", timer.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
