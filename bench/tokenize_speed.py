"""Tokenize stage on 1M generated Korean sentences: our flat-array cache vs a `datasets` map.

    python bench/tokenize_speed.py [--sentences 1000000] [--num-proc 2] [--out reports/bench/tokenize.md]

Generates Korean sentences with the smoke corpus generator (``--unique`` distinct ones,
repeated to ``--sentences``: the tokenizer's work per sentence is the same), builds a WordPiece
tokenizer on them (``pipeline.tiny``, ``--vocab`` pieces asked for, klue/bert-base has 32,000),
then runs each path in a fresh process (so its peak RSS is its own) and times the work after the
corpus is read:

* ``arrays``: what the tokenize stage does, ``pipeline.tokens.tokenize_to_arrays`` + ``write_column``
  (fast tokenizer, batches of 20,000, truncation at 64, flat int32 ids + int64 offsets as .npy);
* ``datasets-N``: ``datasets.Dataset.from_dict(...).map(batched=True, num_proc=N)`` with the same
  tokenizer call, int32 ids, written as memory-mapped Arrow files (``save_to_disk``).

Checks that every path gives the same ids for every sentence, and writes a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MAX_LEN = 64
BATCH = 20_000


def _child(mode: str, work: Path) -> dict:
    """Run one path in this (fresh) process; return its timings and peak memory."""
    from transformers import AutoTokenizer

    from pipeline.data import read_rows_text

    t0 = time.perf_counter()
    sentences = read_rows_text(work / "corpus.txt")
    tokenizer = AutoTokenizer.from_pretrained(work / "tokenizer", use_fast=True)
    read_s = time.perf_counter() - t0
    out = work / mode
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    start = time.perf_counter()
    if mode == "arrays":
        from pipeline.tokens import tokenize_to_arrays, write_column

        ids, offsets = tokenize_to_arrays(tokenizer, sentences, max_len=MAX_LEN, chunk=BATCH, progress=False)
        write_column(out, "sent", ids, offsets)
        tokens = int(ids.size)
    else:
        from datasets import Dataset, Features, Sequence, Value, disable_progress_bars

        disable_progress_bars()
        num_proc = int(mode.split("-")[1])

        def encode(batch):
            enc = tokenizer(batch["sent"], truncation=True, max_length=MAX_LEN, padding=False,
                            return_attention_mask=False, return_token_type_ids=False)
            return {"ids": enc["input_ids"]}

        ds = Dataset.from_dict({"sent": sentences})
        ds = ds.map(encode, batched=True, batch_size=BATCH, num_proc=num_proc if num_proc > 1 else None,
                    remove_columns=["sent"], features=Features({"ids": Sequence(Value("int32"))}),
                    cache_file_name=str(work / f"{mode}.map.arrow"))
        ds.save_to_disk(str(out / "dataset"))
        tokens = 0  # counted by the parent from the written files
    seconds = time.perf_counter() - start
    # ru_maxrss is in KiB on Linux; children (datasets' worker processes) reported separately
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"mode": mode, "seconds": seconds, "read_seconds": read_s, "peak_rss_mb": self_mb,
            "peak_rss_children_mb": children_mb, "tokens": tokens}


def _flat_ids(work: Path, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, offsets) of a path's output, for the exactness check."""
    if mode == "arrays":
        return np.load(work / mode / "sent.ids.npy"), np.load(work / mode / "sent.offsets.npy")
    import pyarrow.compute as pc
    from datasets import load_from_disk

    column = load_from_disk(str(work / mode / "dataset")).data.column("ids").combine_chunks()
    lengths = pc.list_value_length(column).to_numpy()
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return column.flatten().to_numpy(), offsets


def _prepare(work: Path, sentences: int, unique: int, vocab: int) -> dict:
    from pipeline.smoke_data import _corpus_lines
    from pipeline.tiny import build_tiny_model

    t0 = time.perf_counter()
    lines = _corpus_lines(unique, random.Random(0))
    corpus = (lines * (sentences // len(lines) + 1))[:sentences]
    (work / "corpus.txt").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (work / "vocab-corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    build_tiny_model(work / "vocab-corpus.txt", work / "tokenizer", vocab_size=vocab, hidden=8, layers=1, heads=1,
                     intermediate=8)
    from transformers import AutoTokenizer

    vocab_found = len(AutoTokenizer.from_pretrained(work / "tokenizer"))
    chars = sum(len(s) for s in corpus)
    return {"sentences": len(corpus), "unique": len(lines), "vocab": vocab_found, "mean_chars": chars / len(corpus),
            "prepare_seconds": time.perf_counter() - t0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1_000_000)
    parser.add_argument("--unique", type=int, default=200_000)
    parser.add_argument("--vocab", type=int, default=32_000)
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("reports/bench/tokenize.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.work)))
        return 0

    modes = ["arrays", "datasets-1"] + ([f"datasets-{args.num_proc}"] if args.num_proc > 1 else [])
    with tempfile.TemporaryDirectory(prefix="tokenize-bench-") as tmp:
        work = Path(tmp)
        facts = _prepare(work, args.sentences, args.unique, args.vocab)
        load_before = os.getloadavg()
        results = []
        for mode in modes:
            run = subprocess.run([sys.executable, __file__, "--child", mode, "--work", str(work)],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, "TOKENIZERS_PARALLELISM": "true"})
            results.append(json.loads(run.stdout.strip().splitlines()[-1]))
            print(results[-1], flush=True)
        ref_ids, ref_off = _flat_ids(work, "arrays")
        for r in results:
            ids, off = _flat_ids(work, r["mode"])
            r["identical"] = bool(np.array_equal(ids, ref_ids) and np.array_equal(off, ref_off))
            r["tokens"] = int(ids.size)
            r["output_mb"] = sum(p.stat().st_size for p in (work / r["mode"]).rglob("*") if p.is_file()) / 2**20
        load_after = os.getloadavg()

    base = results[0]["seconds"]
    lines = ["# Tokenize stage: flat arrays vs `datasets` map", "",
             f"`python bench/tokenize_speed.py --sentences {args.sentences} --unique {args.unique} "
             f"--vocab {args.vocab} --num-proc {args.num_proc}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
             f"Python {platform.python_version()}; load average {load_before[0]:.1f} before, "
             f"{load_after[0]:.1f} after (a shared machine: other jobs were running).", "",
             f"Data: {facts['sentences']:,} generated Korean sentences ({facts['unique']:,} distinct, "
             f"{facts['mean_chars']:.1f} characters on average), WordPiece tokenizer with {facts['vocab']:,} "
             f"pieces (asked for {args.vocab:,}), truncation at {MAX_LEN}, batches of {BATCH:,}. Each path runs in "
             "a fresh process; time excludes reading the corpus and loading the tokenizer (same for all); peak "
             "memory is the process's ru_maxrss (worker processes listed separately).", "",
             "| path | seconds | vs arrays | peak RSS MiB | workers' peak RSS MiB | output MiB | tokens | "
             "identical ids |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['mode']} | {r['seconds']:.1f} | {r['seconds'] / base:.2f}x | {r['peak_rss_mb']:.0f} | "
                     f"{r['peak_rss_children_mb']:.0f} | {r['output_mb']:.0f} | {r['tokens']:,} | "
                     f"{'yes' if r['identical'] else 'NO'} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
