"""Stage `tokenize@<variant>`: tokenize the training data and KorSTS dev once, into a memory-mapped cache.

    python -m stages.tokenize_data --variant bert-unsup --train data/train --models data/models \
        --raw data/raw --out data/tokens/bert-unsup

The model's fast tokenizer, batched, truncated at `max_len`, unpadded. Reads no
training hyperparameters, so `dvc exp run -S temp=...` reuses the cache.
(Named tokenize_data: a module named tokenize would shadow Python's own.)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_dir, write_json
from pipeline.data import load_benchmark
from pipeline.provenance import Timer, write_timing
from pipeline.errors import UserError, cli_entry
from pipeline.hub import model_slug
from pipeline.modeling import model_position_limit
from pipeline.params import PROTOCOLS, Params, check_choice, check_max_len
from pipeline.sources import file_name
from pipeline.tokens import tokenize_to_arrays, write_column


@dataclass(frozen=True)
class TokenizeConfig:
    model: str
    data: str
    max_len: int
    protocol: str


def read_params(params: Params, variant: str) -> TokenizeConfig:
    src = params.source
    return TokenizeConfig(
        model=params.resolved(variant, "model"),
        data=check_choice(src, f"variants.{variant}.data", params.resolved(variant, "data"), ("wiki", "nli")),
        max_len=check_max_len(src, "max_len", params.resolved(variant, "max_len")),
        protocol=check_choice(src, "protocol", params.get("protocol"), PROTOCOLS),
    )


def run(cfg: TokenizeConfig, *, train: Path, models: Path, raw: Path, out: Path) -> dict:
    from transformers import AutoConfig, AutoTokenizer

    model_dir = models / model_slug(cfg.model)
    limit = model_position_limit(AutoConfig.from_pretrained(model_dir))
    check_max_len("params.yaml", "max_len", cfg.max_len, limit)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    if not tokenizer.is_fast:
        raise UserError(f"{model_dir}: no fast tokenizer (tokenizer.json); expected a fast tokenizer")
    data_dir = train / cfg.data
    if cfg.data == "wiki":
        columns = {"sent": (data_dir / "sentences.txt").read_text(encoding="utf-8").splitlines()}
    else:
        rows = [line.split("\t") for line in (data_dir / "triplets.tsv").read_text(encoding="utf-8").splitlines()]
        columns = {name: [r[i] for r in rows] for i, name in enumerate(("anchor", "positive", "negative"))}
    dev = load_benchmark("korsts", raw / file_name("korsts_dev"), cfg.protocol)
    columns["dev1"], columns["dev2"] = dev.sentence1, dev.sentence2
    meta = {"model": cfg.model, "data": cfg.data, "max_len": cfg.max_len, "protocol": cfg.protocol,
            "columns": {}, "data_manifest": json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))}
    with atomic_dir(out) as tmp:
        for name, sentences in columns.items():
            ids, offsets = tokenize_to_arrays(tokenizer, sentences, max_len=cfg.max_len, desc=f"tokenize {name}")
            write_column(tmp, name, ids, offsets)
            lengths = np.diff(offsets)
            meta["columns"][name] = {"rows": len(sentences), "tokens": int(ids.size),
                                     "truncated": int((lengths >= cfg.max_len).sum())}
        np.save(tmp / "dev.scores.npy", dev.scores)
        write_json(tmp / "meta.json", meta)
    return meta


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    for name in ("train", "models", "raw", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--timing", type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with Timer() as timer:
        cfg = read_params(Params.load(args.params), args.variant)
        meta = run(cfg, train=args.train, models=args.models, raw=args.raw, out=args.out)
    write_timing(args.timing, f"tokenize@{args.variant}", timer.seconds)
    print(json.dumps(meta["columns"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
