"""Stage `evaluate@<variant>`: the card's eight columns and AVG on KorSTS test and KLUE-STS dev.

    python -m stages.evaluate --models models/bert-unsup --raw data/raw \
        --metrics metrics/bert-unsup.json --predictions eval/bert-unsup

Evaluates every seed's selected model (pooling and max length as saved with
it), under both protocols, with 95% paired bootstrap intervals; with several
seeds the headline is the mean over seeds. Writes the metrics JSON and per-pair
predictions (for plots and paired comparisons).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.provenance import Timer, write_timing
from pipeline.errors import UserError, cli_entry
from pipeline.params import Params, device_setting, eval_settings
from pipeline.sources import file_name
from pipeline.stfolder import read_st_folder


def read_params(params: Params):
    """(protocol, eval_batch_size, bootstrap, device)."""
    return (*eval_settings(params), device_setting(params))


def benchmark_paths(raw: Path) -> dict[str, Path]:
    return {"korsts_test": raw / file_name("korsts_test"), "klue_dev": raw / file_name("klue_dev")}


def seed_folders(models: Path) -> list[Path]:
    folders = sorted((p for p in models.glob("seed-*") if p.is_dir()), key=lambda p: int(p.name.split("-", 1)[1]))
    if not folders:
        raise UserError(f"{models}: no seed-<n> model folders; run the train stage first")
    return folders


def run(models: Path, raw: Path, metrics_path: Path, predictions: Path, *, protocol, batch_size, bootstrap,
        device: str = "cuda", mteb_rows: Path | None = None) -> dict:
    from pipeline.devices import announce, require_device
    from pipeline.evaluate import evaluate_folders
    from pipeline.mtebrows import read_rows

    torch_device = require_device(device)

    folders = seed_folders(models)
    declared = read_st_folder(folders[0])
    if not declared.saved_by_st or declared.max_seq_length is None:
        raise UserError(f"{folders[0] / 'modules.json'}: missing; expected a model folder written by the train stage "
                        "(use `simcse-ko evaluate` for other models)")
    max_len = declared.max_seq_length
    announce(torch_device, f"evaluate@{models.name}")
    with atomic_dir(predictions) as tmp:
        metrics = evaluate_folders(folders, benchmark_paths(raw), protocol=protocol, max_len=max_len,
                                   batch_size=batch_size, bootstrap=bootstrap, labels=[f.name for f in folders],
                                   predictions_dir=tmp, device=torch_device.type, mteb_rows=read_rows(mteb_rows))
    write_json(metrics_path, metrics)
    return metrics


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("models", "raw", "metrics", "predictions"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--mteb-rows", type=Path, help="the mteb_rows stage's file (MTEB's own rows)")
    parser.add_argument("--timing", type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with Timer() as timer:
        protocol, batch_size, bootstrap, device = read_params(Params.load(args.params))
        metrics = run(args.models, args.raw, args.metrics, args.predictions, protocol=protocol,
                      batch_size=batch_size, bootstrap=bootstrap, device=device, mteb_rows=args.mteb_rows)
    write_timing(args.timing, f"evaluate@{args.models.name}", timer.seconds)
    print(json.dumps({k: round(metrics[k]["avg"], 2) for k in ("korsts_test", "klue_dev")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
