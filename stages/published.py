"""Stage `published`: the card's four published checkpoints, evaluated with our code.

    python -m stages.published --raw data/raw --metrics metrics/published.json --predictions eval/published

Separates "our evaluation differs from the card" (published checkpoint vs the
card's numbers) from "our training differs" (our model vs the published
checkpoint). Needs the Hugging Face hub; with `published.enabled: false`
(offline) it writes an empty metrics file and says so in the manifest. A checkpoint
that cannot be scored is listed under ``failed`` with its reason and a ``warning:``
line, and the others are scored (see :func:`pipeline.hubeval.score_isolated`).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.errors import UserError, cli_entry
from pipeline.hubeval import eval_config, evaluate_checkpoint, hub_stage_main, score_isolated
from pipeline.params import Params, check_bool
from stages.evaluate import benchmark_paths


def read_params(params: Params) -> dict:
    src = params.source
    enabled = check_bool(src, "published.enabled", params.get("published.enabled"))
    checkpoints = params.get("published.checkpoints")
    if not isinstance(checkpoints, dict) or not all(isinstance(v, dict) and "id" in v for v in checkpoints.values()):
        raise UserError(f"{src}: published.checkpoints must map a variant to {{id, revision}}")
    return {"enabled": enabled, "checkpoints": checkpoints, **eval_config(params)}


def run(cfg: dict, *, raw: Path, metrics_path: Path, predictions: Path, mteb_rows: Path | None = None) -> dict:
    from pipeline.mtebrows import read_rows

    metrics: dict = {}
    rows = read_rows(mteb_rows)
    if cfg["enabled"]:
        from pipeline.devices import announce, require_device

        device = require_device(cfg["device"])  # before anything is downloaded or written
        announce(device, "published")
    with atomic_dir(predictions) as tmp:
        manifest: dict = {"enabled": cfg["enabled"], "checkpoints": {}, "failed": []}
        if cfg["enabled"]:
            for variant, entry in cfg["checkpoints"].items():
                revision = entry.get("revision") or ""
                # the card evaluated [CLS] of the last hidden state, at max length 64
                scored = score_isolated(
                    f"published.checkpoints.{variant}", manifest["failed"],
                    {"variant": variant, "id": entry["id"], "revision": revision},
                    lambda: evaluate_checkpoint(entry["id"], revision, benchmark_paths(raw), cfg, label=variant,
                                                predictions_dir=tmp, device=device.type, mteb_rows=rows))
                if scored is None:
                    continue
                metrics[variant], record, _ = scored
                manifest["checkpoints"][variant] = {"model": entry["id"], **record}
                print(f"{entry['id']}: KorSTS {metrics[variant]['korsts_test']['avg']:.2f}, "
                      f"KLUE {metrics[variant]['klue_dev']['avg']:.2f}", flush=True)
        else:
            print("published checkpoints: skipped (published.enabled is false)", flush=True)
        write_json(tmp / "manifest.json", manifest)
    write_json(metrics_path, metrics)
    return metrics


@cli_entry
def main(argv: list[str] | None = None) -> int:
    return hub_stage_main(argv, description=__doc__.splitlines()[0], stage="published", read_params=read_params,
                          run=run)


if __name__ == "__main__":
    raise SystemExit(main())
