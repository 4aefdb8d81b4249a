"""Stage `baseline`: the untrained base model(s) under the same evaluation, for reference rows.

    python -m stages.baseline --models data/models --raw data/raw \
        --metrics metrics/baseline.json --predictions eval/baseline

One entry per distinct base model of the variants, keyed by its slug
(e.g. ``klue--bert-base``), read from the first variant's folder that holds it
(data/models/<variant>/), pooled with `pooler` and truncated at `max_len`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.provenance import Timer, write_timing
from pipeline.errors import cli_entry
from pipeline.hub import model_slug
from pipeline.params import POOLERS, Params, check_choice, check_max_len, device_setting, eval_settings
from stages.evaluate import benchmark_paths


def read_params(params: Params) -> dict:
    # the first variant trained from each distinct base model: its folder holds that model
    folders: dict[str, str] = {}
    for variant in params.variant_names():
        folders.setdefault(params.resolved(variant, "model"), variant)
    protocol, batch_size, bootstrap = eval_settings(params)
    return {
        "models": folders,
        "pooler": check_choice(params.source, "pooler", params.get("pooler"), POOLERS),
        "max_len": check_max_len(params.source, "max_len", params.get("max_len")),
        "protocol": protocol, "batch_size": batch_size, "bootstrap": bootstrap, "device": device_setting(params),
    }


def run(cfg: dict, *, models: Path, raw: Path, metrics_path: Path, predictions: Path,
        mteb_rows: Path | None = None) -> dict:
    from pipeline.devices import announce, require_device
    from pipeline.evaluate import evaluate_folders
    from pipeline.mtebrows import read_rows

    device = require_device(cfg["device"])
    announce(device, "baseline")
    metrics = {}
    with atomic_dir(predictions) as tmp:
        for model, variant in cfg["models"].items():
            slug = model_slug(model)
            metrics[slug] = evaluate_folders(
                [models / variant], benchmark_paths(raw), protocol=cfg["protocol"], max_len=cfg["max_len"],
                batch_size=cfg["batch_size"], bootstrap=cfg["bootstrap"], default_pooler=cfg["pooler"],
                labels=[slug], predictions_dir=tmp, device=device.type, mteb_rows=read_rows(mteb_rows))
            print(f"{model} (untrained): KorSTS {metrics[slug]['korsts_test']['avg']:.2f}, "
                  f"KLUE {metrics[slug]['klue_dev']['avg']:.2f}", flush=True)
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
        run(read_params(Params.load(args.params)), models=args.models, raw=args.raw, metrics_path=args.metrics,
            predictions=args.predictions, mteb_rows=args.mteb_rows)
    write_timing(args.timing, "baseline", timer.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
