"""One prepared GPU check: card-scale training speed, every CUDA path of training, evaluation under autocast.

GPU time comes in short windows, so everything that has to run on a GPU is this one
command, already exercised on CPU by ``make test`` (``--device cpu --quick``):

1. **Throughput at the card's scale.** A random-init BERT of klue/bert-base's shape
   (config only, nothing downloaded), batch 256 x 2 views, synthetic sentences whose
   lengths follow ``train_throughput.LENGTH_HISTOGRAM``: :func:`pipeline.train.train_seed`
   in fp16 and bf16 (and bf16 with ``deterministic: true``), and the card-style reference
   loop on the same GPU. Sentences/s, step time, peak memory and MFU against this GPU's
   own measured bf16 matrix-multiply rate; a profile of a few steps says where the time
   goes (kernel time by kind against the gaps the GPU waits for the host).
2. **Every CUDA code path of training** on a tiny model and the generated smoke data:
   fp16 autocast + GradScaler, bf16, fused AdamW, the pinned prefetch thread, resume after
   an interrupt (bit-identical with ``deterministic: true``, for bf16 and for fp16 with
   the scaler's state) and ``deterministic: true`` itself (two runs bit-identical).
3. **Evaluation under autocast:** the [CLS]-only last layer against the full pass in
   fp32/bf16/fp16, and the bf16/fp16 metrics against fp32 (max |delta| per column) on a
   pretrained encoder (``--model DIR``), else a random-init bert-base-shaped one.
4. ``--out`` gets ``README.md`` (tables, hardware, versions, commit) and ``gpu_check.json``.

Each measurement runs in a fresh process (clean CUDA context, peak-memory counter and
determinism flags; ``--quick`` runs them in this process). A section that fails is
reported with its error and the others still run. dvc and dvclive are never imported.

Usage, from the repository root (where the project is not installed, e.g. a GPU machine
holding only the working tree, put ``PYTHONPATH=.`` in front)::

    PYTHONPATH=. python bench/gpu_check.py --out reports/bench/gpu     # one GPU (sized for ~4 min on an H100)
    python bench/gpu_check.py --device cpu --quick --out /tmp/gpu-check   # the same code paths at toy size
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch

try:
    import pipeline  # noqa: F401  (the project's library: installed, or on PYTHONPATH)
except ImportError:
    raise SystemExit("error: cannot import the project's `pipeline` package; run from the repository root as "
                     "`PYTHONPATH=. python bench/gpu_check.py ...` (or install the project: make venv)") from None

import train_throughput as tt  # noqa: E402  (Python puts this script's folder first on sys.path)
from eval_speed import matmul_rate  # noqa: E402

from pipeline.atomic import write_json, write_text  # noqa: E402
from pipeline.provenance import code_version, cpu_model, describe_code  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEED = 42
TARGET = 5000  # training sentences/s for bert-base at the card's batch on one H100 (the issue's target)
CORPUS = 1_000_000  # sentences in the card's unsupervised corpus: one epoch, for the training-time estimate
#: Sizes: the real check, and --quick (toy sizes, seconds on a CPU). Warm-up is a multiple of
#: tt.LOG_STEPS (ours is timed at loss read-backs); the tiny runs interrupt at 2 checkpoints + a bit.
SIZES = {
    "full": dict(preset="bert-base", batch=256, warmup=20, steps=120, profile=5, matmul_n=8192, matmul_s=3.0,
                 rows=3000, dev_pairs=300, tiny_batch=64, checkpoint=10, eval_steps=20, interrupt=23),
    "quick": dict(preset="tiny", batch=8, warmup=10, steps=12, profile=2, matmul_n=512, matmul_s=0.3,
                  rows=96, dev_pairs=24, tiny_batch=16, checkpoint=2, eval_steps=3, interrupt=3),
}


class Runner:
    """Runs a measurement in a fresh spawned process, or in this one (``--quick``)."""

    def __init__(self, fresh: bool, threads: int | None):
        self.fresh, self.threads = fresh, threads

    def __call__(self, fn, *args, **kwargs):
        if self.fresh:
            return tt.in_fresh_process(fn, *args, threads=self.threads, **kwargs)
        return fn(*args, **kwargs)


# --- 1. throughput ------------------------------------------------------------------

def measured_rate(device: str, n: int, seconds: float) -> float:
    """This device's matrix-multiply FLOP/s: bf16 on a GPU (what training runs), fp32 on a CPU."""
    dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return matmul_rate(seconds, n, device=device, dtype=dtype)


def nonembedding_params(config: dict) -> int:
    """Encoder-layer parameters of a BERT with ``config`` (built on the meta device: no memory, no init)."""
    from transformers import BertConfig, BertModel

    with torch.device("meta"):
        model = BertModel(BertConfig(**config))
    return tt._nonembedding_params(model)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:400]


def _row(loop: str, precision: str, measure, *, timed_steps: int, params: int, rate: float) -> dict:
    """One table row from ``measure()`` (a train_ours/train_reference result); an exception becomes the row's error."""
    try:
        r = measure()
    except Exception as exc:  # one failing measurement must not lose the others
        return {"loop": loop, "precision": precision, "error": _error(exc)}
    sps, tps = r["sentences"] / r["seconds"], r["tokens"] / r["seconds"]
    row = {"loop": loop, "precision": precision, "sentences_per_s": sps, "step_ms": 1e3 * r["seconds"] / timed_steps,
           "tokens_per_s": tps, "peak_mib": r["peak_mib"], "mfu": 6 * params * tps / rate}
    if r.get("window_step_ms"):  # a first batch of a new padded length may build kernels or plans inside the window
        row["median_window_step_ms"] = float(statistics.median(r["window_step_ms"]))
    return row


def throughput(size: dict, device: torch.device, run: Runner, skipped: list[str], work: Path) -> dict:
    """Section 1: ours (fp16, bf16, deterministic bf16) and the card-style loop at the card's scale, plus a profile."""
    cuda = device.type == "cuda"
    config = dict(tt.PRESETS[size["preset"]])
    folder = str(work / "throughput-model")
    text, lengths = tt.build(Path(folder), config, n=size["batch"] * size["steps"], seed=SEED)
    rate = run(measured_rate, str(device), size["matmul_n"], size["matmul_s"])
    params = nonembedding_params(config)
    kw = dict(batch_size=size["batch"], steps=size["steps"], warmup=size["warmup"], seed=SEED, device=str(device))
    row = dict(timed_steps=size["steps"] - size["warmup"], params=params, rate=rate)
    headline = "fp16" if cuda else "fp32"  # the card's --amp and the `precision` param's default
    rows = [_row("ours", p, lambda p=p: run(tt.train_ours, folder, text, precision=p, **kw), **row)
            for p in (("fp16", "bf16") if cuda else ("fp32",))]
    if cuda:
        rows.append(_row("ours, deterministic: true", "bf16", lambda: run(
            tt.train_ours, folder, text, precision="bf16", deterministic=True, **kw), **row))
    else:
        skipped.append("throughput with deterministic: true: CPU training is always deterministic (a CUDA cost)")
    rows.append(_row("card-style reference", "fp16 + GradScaler" if cuda else "fp32",
                     lambda: run(tt.train_reference, folder, text, **kw), **row))
    try:
        profile = run(tt.train_ours, folder, text, precision=headline, profile_steps=size["profile"], **kw)["profile"]
        if not profile["busy_ms_per_step"] > 0:  # e.g. no CUPTI: an empty trace must not read as "0% waiting"
            profile = {"error": f"the profiler recorded no {'kernel' if cuda else 'operator'} time"}
    except Exception as exc:
        profile = {"error": _error(exc)}
    rate_of = {(r["loop"], r["precision"]): r.get("sentences_per_s") for r in rows}
    ours, ref = rate_of[("ours", headline)], rows[-1].get("sentences_per_s")
    out = {"preset": size["preset"], "model": config, "nonembedding_params": params, "batch": size["batch"],
           "steps": size["steps"], "warmup": size["warmup"], "mean_tokens": float(lengths.mean()), "matmul_flops": rate,
           "matmul": f"{'bf16' if cuda else 'fp32'} {size['matmul_n']}x{size['matmul_n']} torch.mm",
           "headline": headline, "rows": rows, "profile": profile,
           "ours_over_reference": ours / ref if ours and ref else None,
           "epoch_minutes": CORPUS / ours / 60 if ours else None}
    if cuda:
        best = max((r["sentences_per_s"] for r in rows if r["loop"] == "ours" and "error" not in r), default=0.0)
        det, bf16 = rate_of[("ours, deterministic: true", "bf16")], rate_of[("ours", "bf16")]
        out["target"] = {"sentences_per_s": TARGET, "best": best, "met": best >= TARGET}
        out["deterministic_cost"] = bf16 / det if bf16 and det else None  # the same precision without and with
    else:
        skipped.append(f"throughput target ({TARGET:,} sentences/s): a GPU measurement, not checked on CPU")
    return out


# --- 2. every CUDA code path of training --------------------------------------------

def prepare_tiny(work: Path, size: dict) -> tuple[Path, Path]:
    """(model, token cache): a tiny BERT and its cache of the smoke corpus and KorSTS dev (generated data)."""
    from transformers import AutoTokenizer

    from pipeline.data import load_benchmark
    from pipeline.smoke_data import write_smoke_sources
    from pipeline.tiny import build_tiny_model
    from pipeline.tokens import tokenize_to_arrays, write_column

    sources = write_smoke_sources(work / "sources")
    model = build_tiny_model(sources["corpus"], work / "tiny-model")
    tokenizer = AutoTokenizer.from_pretrained(model)
    cache = work / "tiny-tokens"
    cache.mkdir()
    corpus = sources["corpus"].read_text(encoding="utf-8").splitlines()[:size["rows"]]
    dev = load_benchmark("korsts", sources["korsts_dev"], "card")
    n = size["dev_pairs"]
    for name, sentences in (("sent", corpus), ("dev1", dev.sentence1[:n]), ("dev2", dev.sentence2[:n])):
        ids, offsets = tokenize_to_arrays(tokenizer, sentences, max_len=64, progress=False)
        write_column(cache, name, ids, offsets)
    np.save(cache / "dev.scores.npy", dev.scores[:n])
    return model, cache


@contextlib.contextmanager
def probed_training():
    """Record what train_seed really ran, by wrapping three of pipeline.train's functions (this process only).

    Yields a dict that fills during training: the dtype a Linear layer returns in training
    (the autocast dtype), the optimizer's ``fused``/``foreach`` flags, and the thread that
    collated each batch and whether its tensors were pinned.
    """
    import pipeline.train as T

    seen: dict = {"autocast_dtype": None, "fused": None, "foreach": None, "batch_threads": set(), "pinned": set()}
    originals = T.load_encoder, T.make_optimizer, T.prepare_batch

    def load_encoder(*args, **kwargs):
        encoder, tokenizer = originals[0](*args, **kwargs)

        def hook(module, inputs, output):
            if module.training and seen["autocast_dtype"] is None:
                seen["autocast_dtype"] = str(output.dtype).replace("torch.", "")

        next(m for m in encoder.backbone.modules() if isinstance(m, torch.nn.Linear)).register_forward_hook(hook)
        return encoder, tokenizer

    def make_optimizer(*args, **kwargs):
        optimizer = originals[1](*args, **kwargs)
        seen["fused"], seen["foreach"] = optimizer.defaults.get("fused"), optimizer.defaults.get("foreach")
        return optimizer

    def prepare_batch(*args, **kwargs):
        batch = originals[2](*args, **kwargs)
        seen["batch_threads"].add("main" if threading.current_thread() is threading.main_thread() else "worker")
        seen["pinned"].add(bool(batch.input_ids.is_pinned()))
        return batch

    T.load_encoder, T.make_optimizer, T.prepare_batch = load_encoder, make_optimizer, prepare_batch
    try:
        yield seen
    finally:
        T.load_encoder, T.make_optimizer, T.prepare_batch = originals


class Interrupted(Exception):
    """Raised from the log callback to stop training mid-run, as a kill would."""


def _one_run(spec: dict, *, model_dir: Path, cache: Path, device: torch.device, tmp: Path) -> dict:
    """Train once as ``spec`` says (optionally interrupted, then rerun to resume); what was seen."""
    from pipeline.train import DevSet, TrainSettings, train_seed
    from pipeline.tokens import TokenColumn

    run_dir = tmp / spec["label"].replace(" ", "-")
    common = dict(seed=SEED, model_dir=model_dir, columns=[TokenColumn(cache, "sent")], dev=DevSet.load(cache),
                  out_dir=run_dir / "out", state_path=run_dir / "state.pt", fingerprint_value="gpu-check",
                  device=device, progress=False)
    settings = TrainSettings(**spec["settings"])
    stop = spec.get("interrupt_at")
    if stop:
        def log(step: int, values: dict) -> None:
            if step == stop and "train/lr" in values:
                raise Interrupted

        with contextlib.suppress(Interrupted), probed_training():
            train_seed(settings, **common, log=log)
    start = time.perf_counter()
    with probed_training() as seen:
        result = train_seed(settings, **common)
    seconds = time.perf_counter() - start
    losses = [v["train/loss"] for _, v in result.history if "train/loss" in v]
    state = torch.load(run_dir / "state.pt", weights_only=True) if (run_dir / "state.pt").is_file() else {}
    weights = (run_dir / "out" / "model.safetensors").read_bytes()
    return {
        **seen, "batch_threads": sorted(seen["batch_threads"]), "pinned": sorted(seen["pinned"]),
        "label": spec["label"], "precision": settings.precision, "deterministic": settings.deterministic,
        "seconds": seconds, "total_steps": result.total_steps, "resumed_from": result.resumed_from,
        "losses_finite": bool(losses) and all(math.isfinite(x) for x in losses), "last_loss": losses[-1],
        "scaler_scale": state.get("scaler", {}).get("scale"), "sha256": hashlib.sha256(weights).hexdigest(),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


def _max_abs_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    return max(float((x[k].float() - y[k].float()).abs().max()) for k in x)


def train_runs(model_dir: str, cache: str, device: str, plan: list[dict]) -> list[dict]:
    """Run ``plan`` in order in this process; a spec with ``same_as`` is compared with that earlier run."""
    device_ = torch.device(device)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-train-") as tmp:
        tmp = Path(tmp)
        try:
            for spec in plan:
                try:
                    r = _one_run(spec, model_dir=Path(model_dir), cache=Path(cache), device=device_, tmp=tmp)
                except Exception as exc:  # the next runs of the plan still run
                    results[spec["label"]] = {"label": spec["label"], "error": _error(exc),
                                              "traceback": traceback.format_exc()[-3000:]}
                    continue
                other = results.get(spec.get("same_as"), {})
                if "sha256" in other:
                    r["same_as"] = other["label"]
                    r["bit_identical"] = r["sha256"] == other["sha256"]
                    r["max_abs_diff"] = _max_abs_diff(*(tmp / x.replace(" ", "-") / "out" / "model.safetensors"
                                                        for x in (spec["label"], other["label"])))
                results[spec["label"]] = r
        finally:
            torch.use_deterministic_algorithms(False)  # matters only with --quick (one process for everything)
    return list(results.values())


def _plans(size: dict, cuda: bool) -> tuple[list[dict], list[dict]]:
    """(default kernels, deterministic: true) run plans; each runs in its own process."""
    base = dict(epochs=1, batch_size=size["tiny_batch"], lr=1e-3, dropout=0.1, temp=0.05, pooler="cls", recipe="card",
                eval_steps=size["eval_steps"], weight_decay=0.01, hard_negative_weight=0.0, max_len=64,
                checkpoint_steps=size["checkpoint"], log_steps=5, eval_batch_size=128)

    def spec(label: str, precision: str, deterministic: bool, settings: dict | None = None, **extra) -> dict:
        return {"label": label, "settings": {**base, "precision": precision, "deterministic": deterministic,
                                             **(settings or {})}, **extra}

    fast = ([spec("fp16", "fp16", False)] if cuda else []) + [
        spec("bf16", "bf16", False), spec("bf16 again", "bf16", False, same_as="bf16"),
        # bert-unsup-paper's path: the MLP head in training, clipping at 1.0 after the scaler's unscale
        spec("paper recipe", "fp16", False, settings={"recipe": "simcse", "max_grad_norm": 1.0})]
    det = [spec("det bf16", "bf16", True), spec("det bf16 again", "bf16", True, same_as="det bf16"),
           spec("det bf16 resumed", "bf16", True, same_as="det bf16", interrupt_at=size["interrupt"])]
    if cuda:
        det += [spec("det fp16", "fp16", True),
                spec("det fp16 resumed", "fp16", True, same_as="det fp16", interrupt_at=size["interrupt"])]
    return fast, det


def _check(check: str, expected: str, observed: str, ok: bool | None) -> dict:
    return {"check": check, "expected": expected, "observed": observed,
            "status": "info" if ok is None else ("ok" if ok else "FAIL")}


def _same(r: dict) -> str:
    return f"bit-identical {r['bit_identical']} (max abs diff {r['max_abs_diff']:.2e})"


def train_checks(runs: dict[str, dict], cuda: bool, size: dict) -> list[dict]:
    """The table of section 2: what each code path should show on this device, and what it showed."""
    out: list[dict] = []

    def check(name: str, expected: str, labels: tuple[str, ...], observe) -> None:
        """``observe(*runs) -> (observed, ok)``; a run that failed or is missing fails the check with its error."""
        broken = [label for label in labels if "error" in runs.get(label, {"error": "did not run"})]
        if broken:
            errors = "; ".join(f"{label}: {runs.get(label, {}).get('error', 'did not run')}" for label in broken)
            out.append(_check(name, expected, errors, False))
        else:
            out.append(_check(name, expected, *observe(*(runs[label] for label in labels))))

    if cuda:
        check("fp16 autocast + GradScaler", "float16 activations, a finite loss scale", ("fp16",), lambda r: (
            f"{r['autocast_dtype']}, scale {r['scaler_scale']}",
            r["autocast_dtype"] == "float16" and r["scaler_scale"] is not None and math.isfinite(r["scaler_scale"])))
    want = "bfloat16" if cuda else "float32"
    check("bf16 autocast" if cuda else "precision bf16 on CPU", f"{want} activations, no GradScaler", ("bf16",),
          lambda r: (f"{r['autocast_dtype']}, scaler {'none' if r['scaler_scale'] is None else 'present'}",
                     r["autocast_dtype"] == want and r["scaler_scale"] is None))
    check("AdamW kernels", "fused" if cuda else "foreach (CPU)", ("bf16",), lambda r: (
        f"fused={r['fused']}, foreach={r['foreach']}", bool(r["fused"]) if cuda else r["foreach"] and not r["fused"]))
    threads, pinned = (["worker"], [True]) if cuda else (["main"], [False])
    check("prefetch", "next batch collated on a worker thread, pinned" if cuda else
          "no prefetch on CPU (main thread, not pinned)", ("bf16",), lambda r: (
              f"threads {r['batch_threads']}, pinned {r['pinned']}",
              r["batch_threads"] == threads and r["pinned"] == pinned))
    check("the paper's recipe (MLP head, clipping at 1.0)",
          "fp16 + GradScaler, clipped after unscaling: finite losses and scale" if cuda else "finite losses (fp32)",
          ("paper recipe",), lambda r: (
              f"{r['autocast_dtype']}, last loss {r['last_loss']:.4f}, scale {r['scaler_scale']}",
              r["losses_finite"] and (r["scaler_scale"] is not None and math.isfinite(r["scaler_scale"])
                                      if cuda else r["scaler_scale"] is None)))
    check("losses finite", "every logged loss of every run", tuple(runs), lambda *rs: (
        ", ".join(f"{r['label']}: {r['last_loss']:.4f}" for r in rs), all(r["losses_finite"] for r in rs)))
    check("deterministic: true, two runs", "bit-identical weights", ("det bf16", "det bf16 again"), lambda _, r: (
        f"{_same(r)}; CUBLAS_WORKSPACE_CONFIG={r['cublas_workspace_config']}", r["bit_identical"]))
    step = (size["interrupt"] // size["checkpoint"]) * size["checkpoint"]  # the last checkpoint before the interrupt
    for precision in ("bf16", "fp16") if cuda else ("bf16",):
        check(f"resume after an interrupt ({precision}, deterministic)",
              f"resumes at step {step}, bit-identical to the uninterrupted run",
              (f"det {precision}", f"det {precision} resumed"), lambda _, r: (
                  f"resumed at step {r['resumed_from']}, {_same(r)}", r["resumed_from"] == step and r["bit_identical"]))
    check("default kernels, two runs", "may differ (atomics, TF32)" if cuda else "identical (CPU)",
          ("bf16", "bf16 again"), lambda _, r: (f"max abs diff of the weights {r['max_abs_diff']:.2e}",
                                                None if cuda else r["bit_identical"]))
    check("deterministic cost, tiny model", "see section 1 for bert-base",
          ("bf16", "bf16 again", "det bf16", "det bf16 again"), lambda a, b, c, d: (
              f"{(c['seconds'] + d['seconds']) / (a['seconds'] + b['seconds']):.2f}x the time of default kernels",
              None))
    return out


def train_paths(size: dict, device: torch.device, run: Runner, skipped: list[str], work: Path) -> dict:
    """Section 2: the tiny-model runs (two processes: default kernels, deterministic) and their checks."""
    cuda = device.type == "cuda"
    model, cache = prepare_tiny(work, size)
    fast, det = _plans(size, cuda)
    runs: dict[str, dict] = {}
    for plan in (fast, det):  # a process that dies takes only its own plan's runs with it
        try:
            runs.update((r["label"], r) for r in run(train_runs, str(model), str(cache), str(device), plan))
        except Exception as exc:
            runs.update((spec["label"], {"label": spec["label"], "error": _error(exc)}) for spec in plan)
    if not cuda:
        skipped.append("fp16 + GradScaler (training and resume): CUDA only; CPU trains in fp32")
    return {"rows": size["rows"], "batch": size["tiny_batch"], "runs": list(runs.values()),
            "checks": train_checks(runs, cuda, size)}


# --- 3. evaluation under autocast ---------------------------------------------------

def _dtype(name: str):
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def eval_checks(model_dir: str, paths: dict[str, str], device: str, precisions: list[str]) -> dict:
    """[CLS]-only last layer vs the full pass, and the benchmark metrics, per precision."""
    from pipeline.evaluate import load_benchmarks, score_folder
    from pipeline.metrics import correlations
    from pipeline.modeling import (cls_query_last_layer, collate, length_batches, load_encoder, pad_token_id,
                                   tokenize_ids)

    device_ = torch.device(device)
    sets = {"card": load_benchmarks(paths, "card")}
    sentences = list(dict.fromkeys(s for sts in sets["card"].values() for s in sts.sentence1 + sts.sentence2))
    encoder, tokenizer = load_encoder(model_dir, pooler="cls", device=device_)
    encoder.eval()
    ids = tokenize_ids(tokenizer, sentences, 64)
    cls_only, metrics, errors = {}, {}, {}
    for name in precisions:
        dtype, diff, scale = _dtype(name), 0.0, 0.0
        try:
            for idx in length_batches([len(x) for x in ids], 256):
                input_ids, mask = (t.to(device_) for t in collate([ids[i] for i in idx], pad_token_id(tokenizer)))
                with torch.inference_mode(), torch.autocast(device_.type, dtype=dtype, enabled=dtype is not None):
                    full = encoder.embed(input_ids, mask).float()
                    with cls_query_last_layer(encoder):
                        fast = encoder.embed(input_ids, mask).float()
                diff, scale = max(diff, float((full - fast).abs().max())), max(scale, float(full.abs().max()))
            cls_only[name] = {"max_abs_diff": diff, "max_abs_value": scale, "sentences": len(sentences)}
            scores = score_folder(model_dir, sets, max_len=64, batch_size=256, pooler="cls", device=device,
                                  autocast_dtype=dtype)["card"]
            metrics[name] = {bench: correlations(sts.scores, scores[bench]) for bench, sts in sets["card"].items()}
        except Exception as exc:  # the other precisions still run
            errors[name] = _error(exc)
    return {"cls_only": cls_only, "metrics": metrics, "errors": errors,
            "pairs": {b: len(s) for b, s in sets["card"].items()}}


def _eval_model(args, size_name: str, corpus: Path, work: Path, skipped: list[str]) -> tuple[str, str]:
    """(model folder, how it was chosen): --model, else random init of bert-base's shape (tiny with --quick)."""
    from pipeline.tiny import build_tiny_model

    if args.model:
        return str(args.model), f"`{args.model}` (--model)"
    if size_name == "quick":
        skipped.append("evaluation on a pretrained encoder: --quick uses a tiny random-init BERT")
        return str(build_tiny_model(corpus, work / "eval-model")), "tiny random-init BERT (--quick)"
    skipped.append("evaluation on a pretrained encoder: no pretrained weights (--model DIR); used random init")
    folder = build_tiny_model(corpus, work / "eval-model", vocab_size=32000, hidden=768, layers=12, heads=12,
                              intermediate=3072, max_positions=512)
    return str(folder), "random-init BERT of bert-base's shape, WordPiece from the smoke corpus (no --model)"


def evaluation(args, size_name: str, device: torch.device, run: Runner, skipped: list[str], work: Path) -> dict:
    """Section 3: [CLS]-only vs full pass and bf16/fp16 vs fp32 metrics (max |delta| per column)."""
    from pipeline.smoke_data import write_smoke_sources

    written = write_smoke_sources(work / "eval-data")  # the benchmarks (unless --data) and a corpus for a vocabulary
    if args.data:
        paths = {"korsts_test": str(args.data / "kornlu" / "sts-test.tsv"),
                 "klue_dev": str(args.data / "klue-sts" / "klue-sts-v1.1_dev.json")}
        data = f"`{args.data}` (--data)"
    else:
        paths = {"korsts_test": str(written["korsts_test"]), "klue_dev": str(written["klue_dev"])}
        data = "the generated smoke benchmarks (KorSTS test and KLUE-STS dev formats)"
    model, label = _eval_model(args, size_name, written["corpus"], work, skipped)
    precisions = ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32"]
    if device.type != "cuda":
        skipped.append("evaluation in bf16/fp16: autocast is CUDA-only here (CPU evaluation is fp32)")
    result = run(eval_checks, model, paths, str(device), precisions)
    deltas = {}
    for name in precisions[1:]:
        if name in result["metrics"] and "fp32" in result["metrics"]:
            deltas[name] = {bench: {k: abs(v - result["metrics"]["fp32"][bench][k]) for k, v in cols.items()}
                            for bench, cols in result["metrics"][name].items()}
    return {**result, "model": label, "data": data, "precisions": precisions, "deltas": deltas}


# --- report ------------------------------------------------------------------------

def environment(device: torch.device) -> dict:
    """Hardware and versions for the report header."""
    import transformers

    env = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
           "cuda": torch.version.cuda, "cpu": cpu_model(), "cpu_cores": os.cpu_count(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   gpu_count=torch.cuda.device_count(), compute_capability=f"{props.major}.{props.minor}",
                   cudnn=torch.backends.cudnn.version())
        with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
    return env


def _fmt(x, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def render_throughput(t: dict) -> list[str]:
    """Markdown of section 1."""
    timed = t["steps"] - t["warmup"]
    lines = [f"Random-init BERT, preset `{t['preset']}` (`bert-base` is klue/bert-base's shape; "
             f"{t['nonembedding_params'] / 1e6:.1f}M non-embedding parameters), batch {t['batch']} sentences x 2 "
             "dropout views, "
             f"{timed} timed steps after {t['warmup']} warm-up steps, synthetic sentences with the recorded Korean "
             f"length histogram (mean {t['mean_tokens']:.1f} tokens), max length 64. MFU = 6 x non-embedding "
             f"parameters x real tokens/s over this device's measured {t['matmul']} rate, "
             f"{t['matmul_flops'] / 1e12:.3g} TFLOP/s.", "",
             "| loop | precision | sentences/s | step ms | median 10-step window, ms/step | tokens/s | peak MiB | MFU |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in t["rows"]:
        if "error" in r:
            lines.append(f"| {r['loop']} | {r['precision']} | **error:** {_cell(r['error'])} | | | | | |")
            continue
        median = r.get("median_window_step_ms")
        lines.append(f"| {r['loop']} | {r['precision']} | {r['sentences_per_s']:,.0f} | {r['step_ms']:.1f} | "
                     f"{'-' if median is None else format(median, '.1f')} | {r['tokens_per_s']:,.0f} | "
                     f"{r['peak_mib']:,.0f} | {100 * r['mfu']:.1f}% |")
    ratio = t["ours_over_reference"]
    lines += ["", f"- ours ({t['headline']}) / card-style reference (sentences/s): "
              + ("n/a" if ratio is None else f"{ratio:.2f}x")]
    if "target" in t:
        met = "met" if t["target"]["met"] else "**not met** (see the profile below)"
        lines.append(f"- target {t['target']['sentences_per_s']:,} sentences/s: {met}, best "
                     f"{t['target']['best']:,.0f}")
        cost = t["deterministic_cost"]
        lines.append("- `deterministic: true` costs " + ("n/a" if cost is None else f"{cost:.2f}x the bf16 step time"))
    lines.append(f"- one epoch of the {CORPUS:,}-sentence corpus at the {t['headline']} rate: "
                 f"{_fmt(t['epoch_minutes'], '.1f')} min (training steps only: the dev evaluations every "
                 "`eval_steps`, loading and saving come on top)")
    p = t["profile"]
    if "error" in p:
        return lines + ["", f"Profile: **error:** `{p['error']}`"]
    gap = p["span_ms_per_step"] - p["busy_ms_per_step"]
    where = "GPU kernels busy" if p["device"] == "cuda" else "CPU operators' own time"
    lines += ["", f"Profile of {p['steps']} steps of ours (a separate run; the profiler adds overhead): wall "
              f"{p['wall_ms_per_step']:.1f} ms/step; {where} {p['busy_ms_per_step']:.1f} ms/step of a "
              f"{p['span_ms_per_step']:.1f} ms span, so {gap:.1f} ms/step "
              f"({100 * gap / max(p['span_ms_per_step'], 1e-9):.0f}%) is "
              + ("the GPU waiting for the host." if p["device"] == "cuda" else "outside operators."), "",
              "| kind | ms/step |", "|---|---:|"]
    lines += [f"| {kind} | {ms:.2f} |" for kind, ms in p["by_kind"].items()]
    lines += ["", "| top kernel / operator | ms/step |", "|---|---:|"]
    lines += [f"| `{name}` | {ms:.2f} |" for name, ms in p["top"]]
    return lines


def render_train(t: dict) -> list[str]:
    """Markdown of section 2."""
    lines = [f"Tiny BERT (pipeline.tiny) on the generated smoke corpus ({t['rows']} sentences, batch {t['batch']}), "
             "through `pipeline.train.train_seed` itself; what ran is recorded by wrapping its loader, optimizer "
             "and collator, and the GradScaler's scale is read from the resumable state it writes.", "",
             "| check | expected | observed | status |", "|---|---|---|---|"]
    lines += [f"| {c['check']} | {c['expected']} | {_cell(c['observed'])} | {c['status']} |" for c in t["checks"]]
    lines += ["", "| run | precision | deterministic | s | steps | resumed from | last loss | weights sha256 |",
              "|---|---|---|---:|---:|---:|---:|---|"]
    for r in t["runs"]:
        if "error" in r:
            lines.append(f"| {r['label']} | **error:** {_cell(r['error'])} | | | | | | |")
            continue
        lines.append(f"| {r['label']} | {r['precision']} | {r['deterministic']} | {r['seconds']:.1f} | "
                     f"{r['total_steps']} | {r['resumed_from']} | {r['last_loss']:.4f} | `{r['sha256'][:12]}` |")
    for r in t["runs"]:
        if r.get("traceback"):
            lines += ["", f"`{r['label']}` failed:", "", "```", r["traceback"].rstrip(), "```"]
    return lines


def render_evaluation(e: dict) -> list[str]:
    """Markdown of section 3."""
    from pipeline.card import COLUMN_TITLES
    from pipeline.metrics import KEYS

    pairs = ", ".join(f"{b} {n}" for b, n in e["pairs"].items())
    lines = [f"Model: {e['model']}. Data: {e['data']} ({pairs} pairs), card protocol, [CLS], max length 64, "
             "batch 256; fp32 with TF32 off.", "",
             "[CLS]-only last layer (`cls_query_last_layer`) against the full pass, same batches:", "",
             "| precision | max abs diff | max abs value | sentences |", "|---|---:|---:|---:|"]
    for name, c in e["cls_only"].items():
        lines.append(f"| {name} | {c['max_abs_diff']:.2e} | {c['max_abs_value']:.2f} | {c['sentences']} |")
    lines += [f"| {name} | **error:** {_cell(error)} | | |" for name, error in e["errors"].items()]
    lines += ["", "Metrics (x100) in fp32, and abs(bf16 - fp32), abs(fp16 - fp32) per column:", "",
              "| precision | benchmark | " + " | ".join(COLUMN_TITLES) + " |", "|---|---|" + "---:|" * len(KEYS)]
    for bench, cols in e["metrics"].get("fp32", {}).items():
        lines.append(f"| fp32 | {bench} | " + " | ".join(_fmt(cols[k]) for k in KEYS) + " |")
    for name, by_bench in e["deltas"].items():
        for bench, cols in by_bench.items():
            lines.append(f"| {name} Δ | {bench} | " + " | ".join(_fmt(cols[k], ".3f") for k in KEYS) + " |")
        worst = {k: max((cols[k] for cols in by_bench.values() if cols[k] is not None), default=None) for k in KEYS}
        lines.append(f"| {name} max Δ | both | " + " | ".join(f"**{_fmt(worst[k], '.3f')}**" for k in KEYS) + " |")
    return lines


RENDER = {"throughput": ("1. Training throughput at the card's scale", render_throughput),
          "train": ("2. CUDA code paths of training", render_train),
          "evaluation": ("3. Evaluation under autocast", render_evaluation)}


def render(report: dict) -> str:
    """The whole README.md of the check."""
    env = report["environment"]
    if "gpu" in env:
        where = f"{env['gpu']} ({env['gpu_memory_gib']} GiB, compute capability {env['compute_capability']}, " \
                f"driver {env.get('driver', '?')}; {env['gpu_count']} GPU(s) visible)"
    else:
        where = "no GPU: CPU only"
    title = env.get("gpu", "CPU") + (" (--quick: toy sizes, the code paths only)" if report["quick"] else "")
    lines = [f"# GPU check: {title}", "",
             f"- device: {where}; CPU {env['cpu']}, {env['cpu_cores']} cores",
             f"- versions: Python {env['python']}, torch {env['torch']} (CUDA {env['cuda'] or '-'}, cuDNN "
             f"{env.get('cudnn') or '-'}), transformers {env['transformers']}",
             f"- code: {report['code']}",
             f"- command: `{report['command']}`",
             f"- wall time {report['total_seconds']:.0f} s (budget {report['budget']:.0f} s); "
             f"dvc imported: {report['imported']['dvc']}, dvclive imported: {report['imported']['dvclive']}", ""]
    if report.get("partial"):
        lines[1:1] = ["", "**Partial:** written after a section; the run had not finished (a kill leaves this).", ""]
    for name, (heading, fn) in RENDER.items():
        section = report["sections"].get(name)
        if section is None:
            continue
        lines += [f"## {heading}", ""]
        if section["status"] == "ok":
            lines += fn(section)
        else:
            lines += [f"**error:** `{section['error']}`", "", "```", section["traceback"].rstrip(), "```"]
        lines.append("")
    lines += ["## Skipped", ""] + [f"- {s}" for s in report["skipped"]] + [""]
    lines += ["## Section times", "", "| section | seconds | status |", "|---|---:|---|"]
    lines += [f"| {name} | {t['seconds']:.1f} | {t['status']} |" for name, t in report["times"].items()]
    return "\n".join(lines) + "\n"


# --- main --------------------------------------------------------------------------

def _json_safe(obj):
    """The report with non-finite floats as null (the project's JSON refuses NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def _failed(report: dict) -> list[str]:
    """Sections that raised and checks that failed."""
    out = [f"section {n}: {s['error']}" for n, s in report["sections"].items() if s["status"] != "ok"]
    sections = report["sections"]
    out += [f"check {c['check']}: {c['observed']}" for c in sections.get("train", {}).get("checks", [])
            if c["status"] == "FAIL"]
    out += [f"throughput {r['loop']} {r['precision']}: {r['error']}" for r in sections.get("throughput", {}).get(
        "rows", []) if "error" in r]
    if "error" in sections.get("throughput", {}).get("profile", {}):
        out.append(f"throughput profile: {sections['throughput']['profile']['error']}")
    out += [f"evaluation {p}: {e}" for p, e in sections.get("evaluation", {}).get("errors", {}).items()]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python bench/gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/bench/gpu"),
                        help="folder for README.md and gpu_check.json (default: reports/bench/gpu)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cuda[:N] or cpu (cpu needs --quick; default: cuda when available)")
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes, every measurement in this process: the code paths, not the numbers")
    parser.add_argument("--model", type=Path, help="pretrained encoder folder for section 3 (default: random init)")
    parser.add_argument("--data", type=Path, help="folder with kornlu/sts-test.tsv and "
                        "klue-sts/klue-sts-v1.1_dev.json for section 3 (default: the generated benchmarks)")
    parser.add_argument("--sections", default=",".join(RENDER), help=f"comma-separated subset of {', '.join(RENDER)}")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds; a section not started by then is skipped (default 420)")
    parser.add_argument("--commit", help="the commit being checked, when the tree is a copy without .git")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice; 1 with --quick, "
                        "which keeps a shared CPU from stalling at OpenMP barriers)")
    args = parser.parse_args(argv)
    if args.threads is None and args.quick:
        args.threads = 1
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(args.sections) - set(RENDER))
    if unknown or not args.sections:
        parser.error(f"--sections {','.join(args.sections)}: expected a comma-separated subset of {', '.join(RENDER)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device visible to torch")
    if device.type != "cuda" and not args.quick:
        parser.error(f"--device {args.device}: the card-scale check needs a GPU; add --quick for the toy-size run")
    if args.model is not None and not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model}: no config.json; expected a Hugging Face model folder")
    if args.data is not None:
        wanted = ("kornlu/sts-test.tsv", "klue-sts/klue-sts-v1.1_dev.json")
        missing = [p for p in wanted if not (args.data / p).is_file()]
        if missing:
            parser.error(f"--data {args.data}: missing {', '.join(missing)}")
    return args


def _write_report(out: Path, report: dict, start: float, *, done: bool) -> dict:
    """Write gpu_check.json and README.md as they stand; ``done: False`` marks them partial (more sections to come)."""
    report["total_seconds"] = time.perf_counter() - start
    report["imported"] = {name: name in sys.modules for name in ("dvc", "dvclive")}
    report["partial"] = not done
    safe = _json_safe(report)
    write_json(out / "gpu_check.json", safe)
    write_text(out / "README.md", render(safe))
    return safe


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    size_name = "quick" if args.quick else "full"
    if args.threads:
        torch.set_num_threads(args.threads)
    size, run, skipped = SIZES[size_name], Runner(fresh=not args.quick, threads=args.threads), []
    steps = {"throughput": lambda work: throughput(size, device, run, skipped, work),
             "train": lambda work: train_paths(size, device, run, skipped, work),
             "evaluation": lambda work: evaluation(args, size_name, device, run, skipped, work)}
    code = describe_code(code_version(ROOT)) if not args.commit else f"commit `{args.commit[:12]}` (--commit)"
    report = {"command": "python bench/gpu_check.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "quick": args.quick, "budget": args.budget, "code": code, "environment": environment(device),
              "sections": {}, "times": {}, "skipped": skipped}
    if device.type == "cuda" and torch.cuda.device_count() > 1:
        skipped.append("several GPUs: this check uses one; torchrun with NCCL is not exercised here")
    else:
        skipped.append("torchrun with several processes: needs one GPU per process (NCCL); the launch and the "
                       "cross-process gather are tested on CPU with gloo (tests/test_distributed.py)")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        for name in args.sections:
            if time.perf_counter() - start > args.budget:
                skipped.append(f"section {name}: the {args.budget:.0f} s budget was spent before it started")
                report["times"][name] = {"seconds": 0.0, "status": "skipped"}
                continue
            print(f"[{name}] running ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            folder = Path(work) / name
            folder.mkdir()
            try:
                report["sections"][name] = {"status": "ok", **steps[name](folder)}
            except Exception as exc:  # one failing section must not lose the others' results
                report["sections"][name] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:500],
                                            "traceback": traceback.format_exc()[-6000:]}
            status = report["sections"][name]["status"]
            report["times"][name] = {"seconds": time.perf_counter() - t0, "status": status}
            print(f"[{name}] {status} in {report['times'][name]['seconds']:.1f} s", file=sys.stderr, flush=True)
            _write_report(args.out, report, start, done=False)  # what is measured survives a kill of the run
    report = _write_report(args.out, report, start, done=True)
    print(render(report))
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    failed = _failed(report)
    for line in failed:
        print(f"FAILED: {line}", file=sys.stderr)
    print(f"wrote {args.out / 'README.md'} and {args.out / 'gpu_check.json'} in {report['total_seconds']:.0f} s",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
