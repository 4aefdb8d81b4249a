"""Stage `package@<variant>`: the variant's model as a publishable folder with a generated model card.

    python -m stages.package --models models/bert-unsup --metrics metrics/bert-unsup.json --out dist/bert-unsup \
        --mteb-rows data/mteb_rows.json --manifest data/raw/manifest.json

Copies the first seed's selected model (a Hugging Face and sentence-transformers
folder) and writes README.md in the hub's model-card format: YAML metadata with
a model-index of MTEB's KorSTS and KLUE-STS scores (on MTEB's rows, or labelled
with the file they were computed on: pipeline.mteb), the card's tables, a usage
snippet for the embedding that was evaluated, and the training params.
`simcse-ko push dist/<variant> --repo-id ...` uploads it when HF_TOKEN is set.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from pipeline.atomic import atomic_dir
from pipeline.errors import UserError, cli_entry
from pipeline.modelcard import render_model_card


def primary_seed_folder(models: Path) -> Path:
    """The folder of the first seed in training order (the variant's published model)."""
    folders = sorted(p for p in models.glob("seed-*") if (p / "training.json").is_file())
    if not folders:
        raise UserError(f"{models}: no trained seed folders; run the train stage first")
    seeds = json.loads((folders[0] / "training.json").read_text(encoding="utf-8"))["seeds"]
    return models / f"seed-{seeds[0]}"


def package(models: Path, metrics_path: Path, out: Path, mteb_rows: Path | None = None,
            manifest: Path | None = None) -> Path:
    """Copy the variant's model to ``out`` with its model card; ``mteb_rows`` (the mteb_rows stage's file)
    and ``manifest`` (data/raw/manifest.json) say which rows the model-index scores are on."""
    from pipeline.mteb import TASKS, data_used
    from pipeline.mtebrows import provenance

    folder = primary_seed_folder(models)
    training = json.loads((folder / "training.json").read_text(encoding="utf-8"))
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {}) if manifest else {}
    rows = provenance(mteb_rows)
    data = {bench: data_used(metrics, bench, rows, files) for bench in TASKS}
    with atomic_dir(out) as tmp:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
        (tmp / "README.md").write_text(render_model_card(training, metrics, data), encoding="utf-8")
    return out


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("models", "metrics", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--mteb-rows", type=Path, help="the mteb_rows stage's file (MTEB's own rows)")
    parser.add_argument("--manifest", type=Path, help="data/raw/manifest.json (the benchmark files' provenance)")
    args = parser.parse_args(argv)
    print(f"packaged {package(args.models, args.metrics, args.out, args.mteb_rows, args.manifest)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
