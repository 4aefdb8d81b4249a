"""Stage `tokenize@<variant>`: tokenize the training data and KorSTS dev once, into a memory-mapped cache.

    python -m stages.tokenize_data --variant bert-unsup --train data/train --models data/models/bert-unsup \
        --raw data/raw --out data/tokens/bert-unsup --reuse .cache/tokens

The model's fast tokenizer, batched, truncated at `max_len`, unpadded. Reads no
training hyperparameters, so `dvc exp run -S temp=...` reuses the cache. A
cache is determined by the tokenizer files, the training data, `max_len` and
`protocol` (KorSTS dev); variants that agree on those (bert-unsup and
bert-unsup-simcse) get one tokenization: the first computes it into the
content-keyed scratch folder --reuse, the others copy it.
(Named tokenize_data: a module named tokenize would shadow Python's own.)
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.atomic import atomic_dir, write_json
from pipeline.data import load_benchmark, read_rows_text
from pipeline.download import sha256_file
from pipeline.errors import UserError, cli_entry
from pipeline.hub import MANIFEST
from pipeline.modeling import model_position_limit
from pipeline.params import DATA_KINDS, PROTOCOLS, Params, check_choice, check_max_len
from pipeline.provenance import Timer, write_timing
from pipeline.sources import file_name
from pipeline.tokens import content_key, tokenize_to_arrays, write_column

#: What each kind of training data holds: its file, its columns, and its manifest's row count.
DATA_FILES = {"wiki": ("sentences.txt", ("sent",), "sentences"),
              "nli": ("triplets.tsv", ("anchor", "positive", "negative"), "triplets")}


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
        data=check_choice(src, f"variants.{variant}.data", params.resolved(variant, "data"), DATA_KINDS),
        max_len=check_max_len(src, "max_len", params.resolved(variant, "max_len")),
        protocol=check_choice(src, "protocol", params.get("protocol"), PROTOCOLS),
    )


def read_training_columns(data_dir: Path, data: str) -> dict[str, list[str]]:
    """The training data's columns, split at ``\\n`` only; row counts checked against its manifest."""
    name, columns, count_key = DATA_FILES[data]
    path = data_dir / name
    lines = read_rows_text(path)
    expected = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))[count_key]
    if len(lines) != expected:
        raise UserError(f"{path}: {len(lines)} lines, its manifest.json says {expected} {count_key}; "
                        "rebuild it (dvc repro --force corpus triplets)")
    rows = [line.split("\t") for line in lines]
    for number, row in enumerate(rows, start=1):
        if len(row) != len(columns):
            raise UserError(f"{path}:{number}: expected {len(columns)} tab-separated fields "
                            f"({' '.join(columns)}), found {len(row)}")
    return {col: [row[i] for row in rows] for i, col in enumerate(columns)}


def cache_key(cfg: TokenizeConfig, *, models: Path, data_dir: Path, dev_path: Path) -> str:
    """Content key of a token cache: what determines it (tokenizer files, data, max_len, protocol, the
    tokenizing code), and nothing a variant adds."""
    files = json.loads((models / MANIFEST).read_text(encoding="utf-8"))["files"]
    root = Path(__file__).resolve().parents[1]
    return content_key({
        "model": cfg.model, "max_len": cfg.max_len, "protocol": cfg.protocol,
        "tokenizer": {k: v for k, v in files.items() if not k.endswith((".safetensors", ".bin"))},
        "data": sha256_file(data_dir / DATA_FILES[cfg.data][0]), "dev": sha256_file(dev_path),
        "code": {p: sha256_file(root / p) for p in ("pipeline/tokens.py", "pipeline/data.py", "stages/tokenize_data.py")},
    })


def tokenize(cfg: TokenizeConfig, columns: dict[str, list[str]], *, data_dir: Path, models: Path, dev_path: Path,
             out: Path) -> dict:
    """Tokenize the training ``columns`` and KorSTS dev into ``out`` (a fresh folder); return the cache's meta."""
    from transformers import AutoConfig, AutoTokenizer

    limit = model_position_limit(AutoConfig.from_pretrained(models))
    check_max_len("params.yaml", "max_len", cfg.max_len, limit)
    tokenizer = AutoTokenizer.from_pretrained(models, use_fast=True)
    if not tokenizer.is_fast:
        raise UserError(f"{models}: no fast tokenizer (tokenizer.json); expected a fast tokenizer")
    dev = load_benchmark("korsts", dev_path, cfg.protocol)
    columns["dev1"], columns["dev2"] = dev.sentence1, dev.sentence2
    meta = {"model": cfg.model, "data": cfg.data, "max_len": cfg.max_len, "protocol": cfg.protocol,
            "columns": {}, "data_manifest": json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))}
    for name, sentences in columns.items():
        ids, offsets = tokenize_to_arrays(tokenizer, sentences, max_len=cfg.max_len, desc=f"tokenize {name}")
        write_column(out, name, ids, offsets)
        lengths = np.diff(offsets)
        meta["columns"][name] = {"rows": len(sentences), "tokens": int(ids.size),
                                 "truncated": int((lengths >= cfg.max_len).sum())}
    np.save(out / "dev.scores.npy", dev.scores)
    write_json(out / "meta.json", meta)
    return meta


def run(cfg: TokenizeConfig, *, train: Path, models: Path, raw: Path, out: Path, reuse: Path | None = None) -> dict:
    """Write the token cache to ``out``; with ``reuse``, copy an identical cache made for another variant."""
    data_dir = train / cfg.data
    dev_path = raw / file_name("korsts_dev")
    columns = read_training_columns(data_dir, cfg.data)  # row counts checked before any model file is read
    shared = reuse / cache_key(cfg, models=models, data_dir=data_dir, dev_path=dev_path) if reuse else None
    with atomic_dir(out) as tmp:
        if shared is not None and (shared / "meta.json").is_file():
            print(f"tokenize: identical cache found ({shared}); copying it", flush=True)
            shutil.copytree(shared, tmp, dirs_exist_ok=True)
            meta = json.loads((tmp / "meta.json").read_text(encoding="utf-8"))
        else:
            meta = tokenize(cfg, columns, data_dir=data_dir, models=models, dev_path=dev_path, out=tmp)
            if shared is not None:
                with atomic_dir(shared) as keep:
                    shutil.copytree(tmp, keep, dirs_exist_ok=True)
    return meta


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", required=True)
    for name in ("train", "models", "raw", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--reuse", type=Path, help="content-keyed scratch folder shared by variants")
    parser.add_argument("--timing", type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with Timer() as timer:
        cfg = read_params(Params.load(args.params), args.variant)
        meta = run(cfg, train=args.train, models=args.models, raw=args.raw, out=args.out, reuse=args.reuse)
    write_timing(args.timing, f"tokenize@{args.variant}", timer.seconds)
    print(json.dumps(meta["columns"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
