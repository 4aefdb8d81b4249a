"""Stage `compare`: Korean sentence encoders from the hub, under the card's protocol.

    python -m stages.compare --raw data/raw --metrics metrics/compare.json --predictions eval/compare

Evaluates every model in params `compare` with our evaluation code (the card's eight
columns, both benchmarks, both protocols, paired bootstrap intervals), each encoded
the way its own model card defines its embedding: the pooling and Normalize of its
sentence-transformers files, or what params.yaml gives from its card, and any input
prefix (e5's ``query: ``). The manifest records each model's resolved commit, whether
it was pinned, its files' sha256 and the embedding used. A model that cannot be scored
(its revision, download, files or a contradiction with params.yaml) is listed under
``failed`` with its reason and a ``warning:`` line, and the others are scored: these are
repositories we do not control, and the report after the training must not depend on
all of them (see :func:`pipeline.hubeval.score_isolated`). ``compare: []`` writes empty
outputs and needs no hub.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.errors import cli_entry
from pipeline.hub import model_slug
from pipeline.hubeval import eval_config, evaluate_checkpoint, hub_stage_main, read_compare, score_isolated
from pipeline.params import Params
from stages.evaluate import benchmark_paths


def read_params(params: Params) -> dict:
    return {"models": read_compare(params), **eval_config(params)}


def run(cfg: dict, *, raw: Path, metrics_path: Path, predictions: Path, mteb_rows: Path | None = None) -> dict:
    from pipeline.mtebrows import read_rows

    metrics: dict = {}
    rows = read_rows(mteb_rows)
    models = cfg["models"]
    if models:
        from pipeline.devices import announce, require_device

        device = require_device(cfg["device"])  # before anything is downloaded or written
        announce(device, "compare")
    with atomic_dir(predictions) as tmp:
        manifest: dict = {"max_len": cfg["max_len"], "protocol": cfg["protocol"], "models": {}, "failed": []}
        for entry in models:
            scored = score_isolated(
                f"compare: {entry.id}", manifest["failed"], {"id": entry.id, "revision": entry.revision},
                lambda: evaluate_checkpoint(entry.id, entry.revision, benchmark_paths(raw), cfg,
                                            label=model_slug(entry.id), predictions_dir=tmp, device=device.type,
                                            entry=entry, mteb_rows=rows))
            if scored is None:
                continue
            metrics[entry.id], record, embedding = scored
            manifest["models"][entry.id] = {
                "model": entry.id, **record, "pooling": embedding.pooling, "normalize": embedding.normalize,
                "prefix": embedding.prefix, "embedding_from": embedding.origin, "sts_train": entry.sts_train,
                "predictions": model_slug(entry.id)}
            print(f"{entry.id}: KorSTS {metrics[entry.id]['korsts_test']['avg']:.2f}, "
                  f"KLUE {metrics[entry.id]['klue_dev']['avg']:.2f}", flush=True)
        if not models:
            print("compared encoders: none (compare is empty)", flush=True)
        write_json(tmp / "manifest.json", manifest)
    write_json(metrics_path, metrics)
    return metrics


@cli_entry
def main(argv: list[str] | None = None) -> int:
    return hub_stage_main(argv, description=__doc__.splitlines()[0], stage="compare", read_params=read_params,
                          run=run)


if __name__ == "__main__":
    raise SystemExit(main())
