"""Stage `validate`: check every param before any download or training starts.

    python -m stages.validate --out data/params.ok

Reads all of params.yaml and fails with one line naming the param and the
allowed range. Its output never changes, so passing validation reruns nothing
downstream; the download and fetch_model stages depend on it, so a bad param
stops `dvc repro` in seconds, not after the downloads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.atomic import write_text
from pipeline.errors import UserError, cli_entry
from pipeline.params import Params, check_sections, eval_settings, train_config
from stages import compare, corpus, download, fetch_model, mteb_rows, published, triplets


def validate(params: Params) -> list[str]:
    """Validate every section; return the variant names."""
    download.read_params(params)
    names = params.variant_names()
    for name in names:
        train_config(params, name)
        fetch_model.read_params(params, name)
    eval_settings(params)
    corpus.read_params(params)
    triplets.read_params(params)
    published.read_params(params)
    compare.read_params(params)
    mteb_rows.read_params(params)
    check_sections(params.source, "report_sections", params.get("report_sections"))
    report_dir = params.get("report_dir")
    if not isinstance(report_dir, str) or not report_dir or Path(report_dir).is_absolute():
        raise UserError(f"{params.source}: report_dir = {report_dir!r}: expected a relative folder such as reports")
    return names


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    names = validate(Params.load(args.params))
    write_text(args.out, "ok\n")
    print(f"params valid: {len(names)} variants ({', '.join(names)})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
