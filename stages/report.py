"""Stage `report`: render the card's tables, figures and provenance into the report folder.

    python -m stages.report --out reports --metrics metrics --eval eval --models models --live dvclive \
        --raw data/raw --data-models data/models --train data/train --timings timings

Writes <out>/README.md (deterministic markdown), <out>/metrics.json (every
number the tables show), <out>/figures/*.png, <out>/timings.json (wall
times; kept out of README.md so identical runs give identical markdown) and
<out>/mteb/<model>/<revision>/<task>.json (MTEB's result format, every
evaluated model).
Variants without results yet are left out, so the report can follow a
partial run (`dvc repro train@bert-sup` then `python -m stages.report ...`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json, write_text
from pipeline.card import card_order
from pipeline.errors import UserError, cli_entry
from pipeline.params import Params, check_choice, check_sections, eval_settings
from pipeline.report import STANDIN
from pipeline.provenance import code_version


def read_params(params: Params) -> dict:
    names = params.variant_names()
    params.get("variants")
    ordered = card_order(names)  # the card's row order; extensions (e.g. -simcse) after their row
    _, _, bootstrap = eval_settings(params)
    note = params.get("report_note") or ""
    sections = check_sections(params.source, "report_sections", params.get("report_sections"))
    kind = check_choice(params.source, "report_kind", params.get("report_kind", "reproduction"), STANDIN)
    return {"variants": ordered, "bootstrap": bootstrap, "note": str(note).strip(), "sections": sections,
            "kind": kind, "code": report_code(params), "overrides": {n: params.variant(n) for n in names}}


def report_code(params: Params) -> dict | None:
    """Param ``report_code`` ({commit, dirty}: the repository commit that built a smoke or rehearsal
    project), or None when it is empty (the report then names this checkout's commit)."""
    code = params.get("report_code", None) or None
    if code is not None and (not isinstance(code, dict) or not isinstance(code.get("commit"), str)
                             or not isinstance(code.get("dirty"), bool)):
        raise UserError(f"{params.source}: report_code = {code!r}: expected {{}} or {{commit: <sha>, dirty: "
                        "true|false}} (make smoke and make rehearsal write it)")
    return code


def build(cfg: dict, args: argparse.Namespace) -> Path:
    from pipeline import report

    inputs = report.collect(
        variants=cfg["variants"], metrics_dir=args.metrics, eval_dir=args.eval, models_dir=args.models,
        live_dir=args.live, raw_dir=args.raw, data_models_dir=args.data_models, train_dir=args.train,
        lock_path=Path("dvc.lock"), code=cfg["code"] or code_version("."), note=cfg["note"],
        bootstrap=cfg["bootstrap"], sections=cfg["sections"], kind=cfg["kind"], overrides=cfg["overrides"])
    comparisons = report.published_differences(inputs)
    improvements = report.baseline_differences(inputs)
    out: Path = args.out
    with atomic_dir(out / "figures") as tmp:
        figures = report.draw_figures(inputs, tmp)
        encoder_figure = report.draw_encoder_figure(inputs, tmp)
    write_json(out / "metrics.json", report.combined_metrics(inputs, comparisons, improvements))
    stage_timings = report.timings(args.timings)
    write_json(out / "timings.json", stage_timings)
    write_mteb(inputs, stage_timings, out / "mteb", args.mteb_rows)
    write_text(out / "README.md", report.render(inputs, figures, comparisons, improvements,
                                                      encoder_figure))
    return out / "README.md"


def write_mteb(inputs, stage_timings: dict, folder: Path, rows_file: Path | None) -> None:
    """MTEB-format results (one JSON per task) of every evaluated model into ``folder``: on MTEB's rows
    where the evaluation stages scored them (``rows_file``), else labelled with our file."""
    from pipeline import mteb
    from pipeline.mtebrows import provenance
    from pipeline.report import mteb_models

    models = mteb_models(inputs, stage_timings)
    with atomic_dir(folder) as tmp:
        mteb.write_results(tmp, models, provenance(rows_file), inputs.data_manifest)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("out", "metrics", "eval", "models", "live", "raw", "data-models", "train", "timings"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--mteb-rows", type=Path, help="the mteb_rows stage's file (MTEB's own rows)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    path = build(read_params(Params.load(args.params)), args)
    print(f"report: {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
