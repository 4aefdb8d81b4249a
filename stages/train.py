"""Stage `train@<variant>`: SimCSE training, once per seed; keeps the checkpoint selected on KorSTS dev.

    python -m stages.train --variant bert-unsup --tokens data/tokens/bert-unsup --models data/models/bert-unsup \
        --out models/bert-unsup --live dvclive/bert-unsup --resume checkpoints/bert-unsup

Writes models/<variant>/seed-<s>/ (Hugging Face + sentence-transformers folder
and training.json) and dvclive/<variant>/ (loss, learning rate and dev scores
per step). A resumable state is kept under --resume every `checkpoint_steps`;
rerunning after a kill resumes from it. A non-finite loss stops the stage (exit
code 2, one line) and keeps that state, which a rerun resumes after a change of
lr/precision/temp/weight_decay/hard_negative_weight. With `nproc` > 1 or `nnodes` > 1
the stage relaunches itself under torchrun (DDP, negatives gathered across processes;
with several machines every node runs this command and only node 0 writes outputs).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from pipeline.devices import require_device
from pipeline.errors import cli_entry
from pipeline.params import Params, TrainConfig, train_config
from pipeline.provenance import Timer, write_timing


#: Not written into training.json: the seeds are recorded one per model, and where the machines met is not
#: a property of the model (the process count is recorded as ``processes``).
NOT_RECORDED = ("seeds", "nnodes", "node_rank", "master_addr", "master_port")


def read_params(params: Params, variant: str) -> TrainConfig:
    return train_config(params, variant)


def settings_for(cfg: TrainConfig):
    from pipeline.train import TrainSettings

    names = {f.name for f in dataclasses.fields(TrainSettings)}
    return TrainSettings(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in names})


def _relaunch_under_torchrun(cfg: TrainConfig) -> int:
    import subprocess

    from pipeline.distributed import torchrun_command

    cmd = torchrun_command(["-m", "stages.train", *sys.argv[1:]], nproc=cfg.nproc, nnodes=cfg.nnodes,
                           node_rank=cfg.node_rank, master_addr=cfg.master_addr, master_port=cfg.master_port)
    print("launching:", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


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
    require_device(cfg.device, where=args.params)  # before a relaunch, a download or a model load
    if (cfg.nproc > 1 or cfg.nnodes > 1) and "LOCAL_RANK" not in os.environ:
        return _relaunch_under_torchrun(cfg)
    from pipeline.runs import train_variant

    with Timer() as timer:
        timings = train_variant(
            settings_for(cfg), variant=cfg.variant, model=cfg.model, data=cfg.data, seeds=cfg.seeds,
            record_config={k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RECORDED},
            tokens=args.tokens, models=args.models, out=args.out, live_dir=args.live, resume=args.resume,
            device_name=cfg.device)
    if int(os.environ.get("RANK", 0)) == 0:
        write_timing(args.timing, f"train@{args.variant}", timer.seconds,
                     seeds={str(k): v for k, v in timings.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
