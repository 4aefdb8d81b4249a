"""Stage `train@<variant>`: SimCSE training, once per seed; keeps the checkpoint selected on KorSTS dev.

    python -m stages.train --variant bert-unsup --tokens data/tokens/bert-unsup --models data/models \
        --out models/bert-unsup --live dvclive/bert-unsup --resume checkpoints/bert-unsup

Writes models/<variant>/seed-<s>/ (Hugging Face + sentence-transformers folder
and training.json) and dvclive/<variant>/ (loss, learning rate and dev scores
per step). A resumable state is kept under --resume every `checkpoint_steps`;
rerunning after a kill resumes from it. With `nproc` > 1 the stage relaunches
itself under torchrun (DDP, negatives gathered across processes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.errors import UserError, cli_entry
from pipeline.hub import model_slug
from pipeline.params import Params, TrainConfig, train_config
from pipeline.provenance import Timer, write_timing


def read_params(params: Params, variant: str) -> TrainConfig:
    return train_config(params, variant)


def settings_for(cfg: TrainConfig):
    from pipeline.train import TrainSettings

    names = {f.name for f in dataclasses.fields(TrainSettings)}
    return TrainSettings(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in names})


def _relaunch_under_torchrun(nproc: int) -> int:
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "stages.train", *sys.argv[1:]]
    print("launching:", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def run(cfg: TrainConfig, *, tokens: Path, models: Path, out: Path, live_dir: Path, resume: Path) -> dict:
    import torch
    from dvclive import Live

    from pipeline import distributed as D
    from pipeline.modeling import model_position_limit
    from pipeline.params import check_max_len
    from pipeline.provenance import environment
    from pipeline.tokens import TokenColumn
    from pipeline.train import DevSet, fingerprint, train_seed

    info = D.from_env()
    model_dir = models / model_slug(cfg.model)
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: base model folder missing; run the fetch_model stage first")
    from transformers import AutoConfig

    check_max_len("params.yaml", "max_len", cfg.max_len, model_position_limit(AutoConfig.from_pretrained(model_dir)))
    meta = json.loads((tokens / "meta.json").read_text(encoding="utf-8"))
    if meta["model"] != cfg.model or meta["max_len"] != cfg.max_len:
        raise UserError(f"{tokens}: tokenized for {meta['model']} at max_len {meta['max_len']}; "
                        "rerun the tokenize stage (dvc repro)")
    names = ("sent",) if cfg.data == "wiki" else ("anchor", "positive", "negative")
    columns = [TokenColumn(tokens, name) for name in names]
    if len(columns[0]) < cfg.batch_size:
        print(f"warning: {len(columns[0])} training rows < batch_size {cfg.batch_size}: one partial batch "
              "per epoch", flush=True)
    dev = DevSet.load(tokens)
    if torch.cuda.is_available():
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    D.init(info, device.type)
    base_record = json.loads((models / "manifest.json").read_text(encoding="utf-8"))[model_slug(cfg.model)]
    settings = settings_for(cfg)

    live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None) if info.is_main else None
    timings: dict = {}
    try:
        for seed in cfg.seeds:
            prefix = f"seed-{seed}"
            fp = fingerprint({"settings": dataclasses.asdict(settings), "seed": seed, "tokens": meta,
                              "base": base_record["files"], "world": info.world})
            seed_dir = resume / prefix
            done = seed_dir / "done"

            def log(step: int, values: dict, prefix=prefix) -> None:
                live.step = step
                for name, value in values.items():
                    live.log_metric(f"{prefix}/{name}", value, plot=True)

            def replay(history, log=log) -> None:
                for step, values in history:
                    log(step, values)

            record_path = done / "training.json"
            if record_path.is_file() and json.loads(record_path.read_text())["fingerprint"] == fp:
                record = json.loads(record_path.read_text())
                if live is not None:
                    replay(json.loads((seed_dir / "history.json").read_text()))
                print(f"seed {seed}: already trained (resume area), step {record['selected_step']} selected",
                      flush=True)
                timings[seed] = {"already_trained": True}
                continue
            if info.is_main:
                shutil.rmtree(done, ignore_errors=True)
            result = train_seed(settings, seed=seed, model_dir=model_dir, columns=columns, dev=dev,
                                out_dir=done, state_path=seed_dir / "state.pt", fingerprint_value=fp,
                                device=device, info=info, log=log if live else None,
                                replay=replay if live else None)
            record = {
                "variant": cfg.variant, "seed": seed, "fingerprint": fp,
                "config": {**{k: v for k, v in dataclasses.asdict(cfg).items() if k != "seeds"}, "seed": seed},
                "base_model": {k: base_record.get(k) for k in ("model", "source", "revision", "commit", "pinned")},
                "selected_step": result.selected_step, "selection_metric": f"korsts_dev.{_selection(cfg)}",
                "best_dev": result.best_dev, "total_steps": result.total_steps, "dev_history": result.dev_history,
                "seeds": list(cfg.seeds), "processes": info.world, "device": str(device.type),
                "environment": environment(), "data": meta["data_manifest"],
            }
            # operational facts (time, resumption) stay out of the model folder, which must be reproducible
            timings[seed] = {"wall_seconds": round(result.wall_seconds, 2), "resumed_from_step": result.resumed_from}
            if info.is_main:
                write_json(seed_dir / "history.json", [[step, values] for step, values in result.history])
                write_json(record_path, record)
                (seed_dir / "state.pt").unlink(missing_ok=True)
            print(f"seed {seed}: selected step {result.selected_step}/{result.total_steps}, "
                  f"dev {result.best_dev}", flush=True)
    finally:
        if live is not None:
            live.end()
        D.barrier(info)

    if info.is_main:
        with atomic_dir(out) as tmp:
            for seed in cfg.seeds:
                shutil.copytree(resume / f"seed-{seed}" / "done", tmp / f"seed-{seed}")
        shutil.rmtree(resume, ignore_errors=True)  # scratch: only needed until the stage succeeds
    D.shutdown(info)
    return timings


def _selection(cfg: TrainConfig) -> str:
    from pipeline.train import SELECTION

    return SELECTION[cfg.recipe]


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    for name in ("tokens", "models", "out", "live", "resume"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--timing", type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    cfg = read_params(Params.load(args.params), args.variant)
    if cfg.nproc > 1 and "LOCAL_RANK" not in os.environ:
        return _relaunch_under_torchrun(cfg.nproc)
    with Timer() as timer:
        timings = run(cfg, tokens=args.tokens, models=args.models, out=args.out, live_dir=args.live,
                      resume=args.resume)
    if int(os.environ.get("RANK", 0)) == 0:
        write_timing(args.timing, f"train@{args.variant}", timer.seconds,
                     seeds={str(k): v for k, v in timings.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
