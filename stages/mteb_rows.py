"""Stage `mteb_rows`: read MTEB's own KorSTS and KLUE-STS rows from the hub, or record why not.

    python -m stages.mteb_rows --out data/mteb_rows.json

Writes one JSON: per benchmark, the rows of the dataset MTEB's task reads (``dkoterwa/kor-sts``
test, ``klue/klue`` sts validation, at mteb's pinned revisions) with their descriptive statistics,
or ``loaded: false`` and the reason (no hub, or `mteb_rows: false` in params.yaml). The evaluation
stages score every model on the loaded rows too; the MTEB-format files and model cards use those
scores, and say they were computed on our GitHub files when the rows could not be loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.atomic import write_json
from pipeline.errors import UserError, cli_entry
from pipeline.params import Params
from pipeline.provenance import Timer, write_timing


def read_params(params: Params) -> bool:
    """The ``mteb_rows`` switch (a bool)."""
    value = params.get("mteb_rows")
    if not isinstance(value, bool):
        raise UserError(f"{params.source}: mteb_rows = {value!r}; expected true (read MTEB's rows from the hub) "
                        "or false (MTEB-format files labelled as computed on our files)")
    return value


def build(load: bool) -> dict:
    """The rows file's content; prints a warning for every task whose rows were not loaded."""
    from pipeline.mteb import TASKS
    from pipeline.mtebrows import load_all

    record = load_all() if load else {bench: {"loaded": False, "reason": "params.yaml mteb_rows: false"}
                                      for bench in TASKS}
    for bench, entry in record.items():
        if entry["loaded"]:
            rows = entry["statistics"]["num_samples"]
            print(f"{bench}: {rows} rows of {entry['dataset']}@{entry['revision']}", flush=True)
            if rows != TASKS[bench]["rows"]:  # the pinned revision should never change; say so if it did
                print(f"warning: {bench}: {rows} rows, not the {TASKS[bench]['rows']} of mteb's descriptive "
                      "statistics", flush=True)
        else:
            print(f"warning: {bench}: MTEB's rows not loaded ({entry['reason']}); its MTEB-format results "
                  "will be computed on our GitHub file and say so", flush=True)
    return record


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timing", type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with Timer() as timer:
        write_json(args.out, build(read_params(Params.load(args.params))))
    write_timing(args.timing, "mteb_rows", timer.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
