"""The ``simcse-ko`` command: preflight a run, pin what it recorded, evaluate any model, push one.

    simcse-ko preflight                 check the machine and every input before `dvc repro`
    simcse-ko pin [--dry-run]           write the recorded sha256s and commits into params.yaml
    simcse-ko evaluate MODEL --korsts-test TSV --klue-dev JSON [--json OUT] [--protocol card|clean]
    simcse-ko push dist/bert-unsup --repo-id you/simcse-ko-bert-unsup   (token from HF_TOKEN)
    simcse-ko experiments [NAME ...] [--project .] [--out reports/experiments]

``evaluate`` uses the evaluate stage's implementation (same parsing, pooling,
metrics, bootstrap) and writes the same metric keys.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pipeline.errors import UserError, cli_entry

#: How `simcse-ko evaluate` names where its pooling came from (see pipeline.evaluate.embedding_of).
POOLING_ORIGIN = {"given": "from --pooler", "folder": "from the folder's sentence-transformers config",
                  "default": "default: the folder has no sentence-transformers config"}


def _local_model(model: str, revision: str | None, scratch: Path) -> Path:
    """A local folder for ``model``: itself if it is one, else a hub download at ``revision``."""
    from pipeline.hub import fetch_model, is_local

    if is_local(model):
        return Path(model)
    record = fetch_model(model, revision, scratch / "model", st_files=True)
    print(f"{model}: hub commit {record['commit']}", file=sys.stderr)
    return scratch / "model"


def evaluate_command(args: argparse.Namespace) -> int:
    import torch

    from pipeline.atomic import write_json
    from pipeline.evaluate import embedding_of, evaluate_folders, format_rows
    from pipeline.params import BootstrapConfig
    from pipeline.stfolder import read_st_folder

    paths = {}
    if args.korsts_test:
        paths["korsts_test"] = args.korsts_test
    if args.klue_dev:
        paths["klue_dev"] = args.klue_dev
    if not paths:
        raise UserError("nothing to evaluate: pass --korsts-test TSV and/or --klue-dev JSON")
    for path in paths.values():
        if not Path(path).is_file():
            raise UserError(f"{path}: file not found")
    with tempfile.TemporaryDirectory(prefix="simcse-ko-") as scratch:
        folder = _local_model(args.model, args.revision, Path(scratch))
        declared = read_st_folder(folder)
        max_len = args.max_len
        if max_len is None:
            # a sentence-transformers folder is truncated where sentence-transformers would; others at the card's 64
            max_len = declared.max_seq_length if declared.saved_by_st and declared.max_seq_length else 64
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        pooling, normalize, origin = embedding_of(folder, args.pooler)
        prefix = "" if args.pooler else declared.prefix("", str(args.model))
        metrics = evaluate_folders(
            [folder], paths, protocol=args.protocol, max_len=max_len, batch_size=args.batch_size,
            bootstrap=BootstrapConfig(resamples=args.resamples, confidence=0.95, seed=args.seed),
            pooler=args.pooler, prefix=prefix, labels=[Path(args.model).name], device=device)
    print(f"pooling: {pooling}, normalize: {'yes' if normalize else 'no'} ({POOLING_ORIGIN[origin]})"
          + (f", prefix {prefix!r}" if prefix else "") + f", max length {max_len}")
    print("\n".join(format_rows(metrics, args.model)))
    if args.json:
        write_json(args.json, metrics)
    return 0


def preflight_command(args: argparse.Namespace) -> int:
    from pipeline.params import Params
    from pipeline.preflight import iter_preflight, verdict

    checks = []
    for check in iter_preflight(Params.load(args.params)):  # each line as soon as its check is done
        print(check.line(), flush=True)
        checks.append(check)
    line, errors = verdict(checks)
    print(line, flush=True)
    if errors:
        print("\n".join(errors), file=sys.stderr)
    return 1 if errors else 0


def pin_command(args: argparse.Namespace) -> int:
    from pipeline.pin import pin_project

    pins, problems, _ = pin_project(".", params_file=args.params, dry_run=args.dry_run)
    for pin in pins:
        print(pin.describe())
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        print(f"{args.params}: not changed ({len(problems)} recorded value(s) disagree with it)")
        return 2
    if not pins:
        print(f"{args.params}: nothing to pin (every recorded sha256 and commit is already there)")
    elif args.dry_run:
        print(f"{args.params}: not changed (--dry-run); {len(pins)} value(s) would be pinned")
    else:
        print(f"{args.params}: {len(pins)} value(s) pinned; commit it: git commit {args.params}")
    return 0


def push_command(args: argparse.Namespace) -> int:
    from pipeline.modelcard import push_to_hub

    folder = Path(args.folder)
    if not (folder / "README.md").is_file() or not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder}: not a packaged model (README.md and model.safetensors expected); "
                        "run `dvc repro package@<variant>` first")
    print(push_to_hub(folder, args.repo_id, private=args.private))
    return 0


def experiments_command(args: argparse.Namespace) -> int:
    from pipeline.experiments import write_report

    project = Path(args.project)
    out = Path(args.out) if Path(args.out).is_absolute() else project / args.out
    metrics = write_report(project, out, args.names)
    runs = {(r["experiment"], r["state"]) for r in metrics["rows"]}
    print(f"{out / 'README.md'}: {len(metrics['rows'])} rows, {len(runs) - 1} experiments")
    return 0


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="simcse-ko", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate", help="the card's eight columns and AVG, with 95%% bootstrap intervals")
    ev.add_argument("model", help="a local model folder or a hub id")
    ev.add_argument("--korsts-test", type=Path, help="KorSTS test TSV")
    ev.add_argument("--klue-dev", type=Path, help="KLUE-STS dev JSON")
    ev.add_argument("--json", type=Path, help="write the metrics JSON here (the evaluate stage's keys)")
    ev.add_argument("--protocol", choices=("card", "clean"), default="card",
                    help="card: the card's quirks (default); clean: sentences as published, real-label")
    ev.add_argument("--revision", help="hub revision (commit or branch) when MODEL is a hub id")
    ev.add_argument("--pooler", choices=("cls", "mean", "max"),
                    help="pool this way and do not normalize, whatever the folder's sentence-transformers "
                         "config says (default: the folder's config, else cls)")
    ev.add_argument("--max-len", type=int, help="default: where sentence-transformers would truncate the folder "
                    "(its max_seq_length, else its tokenizer's limit), else 64")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    ev.add_argument("--seed", type=int, default=42, help="bootstrap seed")
    ev.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    ev.set_defaults(func=evaluate_command)
    pre = sub.add_parser("preflight", help="check the machine and every input before `dvc repro` "
                                           "(run in the project folder)")
    pre.add_argument("--params", default="params.yaml")
    pre.set_defaults(func=preflight_command)
    pin = sub.add_parser("pin", help="write the sha256s and commits a run recorded (data/raw, data/models, "
                                     "eval/published, eval/compare) "
                                     "into params.yaml (run in the project folder)")
    pin.add_argument("--params", default="params.yaml")
    pin.add_argument("--dry-run", action="store_true", help="print the changes, write nothing")
    pin.set_defaults(func=pin_command)
    push = sub.add_parser("push", help="upload a packaged model folder to the hub (token from HF_TOKEN)")
    push.add_argument("folder", help="dist/<variant>")
    push.add_argument("--repo-id", required=True)
    push.add_argument("--private", action="store_true")
    push.set_defaults(func=push_command)
    exp = sub.add_parser("experiments", help="compare the DVC experiments of the current commit (dvc exp show)")
    exp.add_argument("names", nargs="*", help="experiment names (default: every experiment of the current commit)")
    exp.add_argument("--project", default=".", help="the DVC project (default: here)")
    exp.add_argument("--out", default="reports/experiments", help="report folder, relative to the project")
    exp.set_defaults(func=experiments_command)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
