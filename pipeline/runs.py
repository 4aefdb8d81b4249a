"""Training one variant: every seed, through a resumable scratch area, into one models folder.

:func:`train_variant` is what the ``train@<variant>`` stage runs. Per seed it
trains with :func:`pipeline.train.train_seed` into ``<resume>/seed-<s>/done``
and records ``training.json`` (settings, base model, data manifest, selected
step, dev history). A seed whose record carries the same fingerprint (settings,
seed, token cache, base model files, process count) is not trained again, so a
stage killed after some seeds resumes at the next one, and one killed inside a
seed resumes from that seed's last checkpoint. Only when every seed is done is
``out`` written (atomically) and the scratch area removed.

Nothing after training may fail where it could have failed before: the folders
written at the end are checked writable and the ``training.json`` record
(all but the training results) is serialised before the first step; histories
hold only finite numbers (see :func:`pipeline.train.train_seed`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from pipeline import distributed as D
from pipeline.atomic import atomic_dir, dumps_json, write_json
from pipeline.errors import UserError
from pipeline.train import (SELECTION, DevSet, NonFiniteLoss, TrainSettings, nonfinite_marker, run_fingerprints,
                            train_seed)


def check_training_inputs(*, model: str, max_len: int, tokens: Path, models: Path) -> tuple[Path, dict, dict]:
    """Check the base model folder and the token cache agree with the params, before any training.

    Args:
        models: the variant's base-model folder (fetch_model stage: files + manifest.json).

    Returns:
        (base model folder, the token cache's meta.json, the base model's manifest record)
    """
    from transformers import AutoConfig

    from pipeline.hub import MANIFEST
    from pipeline.modeling import model_position_limit
    from pipeline.params import check_max_len

    if not (models / MANIFEST).is_file():
        raise UserError(f"{models}: base model folder missing; run the fetch_model stage first (dvc repro)")
    base_record = json.loads((models / MANIFEST).read_text(encoding="utf-8"))
    meta = json.loads((tokens / "meta.json").read_text(encoding="utf-8"))
    for where, found in ((models, base_record["model"]), (tokens, meta["model"])):
        if found != model:
            raise UserError(f"{where}: made for model {found!r}, params say {model!r}; rerun `dvc repro`")
    if meta["max_len"] != max_len:
        raise UserError(f"{tokens}: tokenized at max_len {meta['max_len']}, params say {max_len}; "
                        "rerun the tokenize stage (dvc repro)")
    check_max_len("params.yaml", "max_len", max_len, model_position_limit(AutoConfig.from_pretrained(models)))
    return models, meta, base_record


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and write (then remove) a file in it, so a later write cannot fail there."""
    import tempfile

    expected = "expected a folder this process can write to"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is not a folder; {expected}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise UserError(f"{folder}: not writable ({exc.strerror or type(exc).__name__}); {expected}") from None


def summarize_selected(live, prefix: str, selected_step: int, best_dev: dict[str, float]) -> None:
    """Put the selected step's dev scores into dvclive's summary (``metrics.json``, what
    ``dvc exp show`` lists) under ``<prefix>/dev``, and the step under ``<prefix>/selected_step``.

    dvclive's summary holds the last value logged for each metric, i.e. the last
    evaluation's dev scores; the model the stage keeps is the selected step's. The
    per-step history (the plots) is left as logged.
    """
    seed_summary = live.summary.setdefault(prefix, {})
    seed_summary["dev"] = {name: float(value) for name, value in best_dev.items()}
    seed_summary["selected_step"] = int(selected_step)


@dataclass
class VariantInputs:
    """What every seed of a variant trains on, checked and loaded once (see :func:`load_variant`)."""

    info: D.DistInfo
    device: object  # torch.device
    model_dir: Path
    base_record: dict  # the base model's manifest record
    meta: dict  # the token cache's meta.json
    columns: list
    dev: DevSet
    common: dict  # the part of every seed's training.json that training does not change


def load_variant(settings: TrainSettings, *, variant: str, model: str, data: str, seeds: Sequence[int],
                 record_config: dict, tokens: Path, models: Path, out: Path, live_dir: Path, resume: Path,
                 device_name: str) -> VariantInputs:
    """Check the inputs and the places written at the end, load the data, start the process group.

    Everything here can fail on a user's input, so it runs before the first training step.
    """
    import torch

    from pipeline.devices import announce, executed_settings, require_device
    from pipeline.provenance import environment
    from pipeline.tokens import TokenColumn

    info = D.from_env()
    model_dir, meta, base_record = check_training_inputs(model=model, max_len=settings.max_len, tokens=tokens,
                                                         models=models)
    names = ("sent",) if data == "wiki" else ("anchor", "positive", "negative")
    columns = [TokenColumn(tokens, name) for name in names]
    if len(columns[0]) < settings.batch_size:
        print(f"warning: {len(columns[0])} training rows < batch_size {settings.batch_size}: one partial batch "
              "per epoch", flush=True)
    dev = DevSet.load(tokens)
    device = require_device(device_name, local_rank=info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if info.is_main:
        announce(device, f"train@{variant}")
    D.init(info, device.type)
    if info.is_main:  # before any training: the places written at the end, and the record's fixed part
        for folder in (resume, out.parent, live_dir):
            check_writable(folder)
    common = {
        "variant": variant, "selection_metric": f"korsts_dev.{SELECTION[settings.recipe]}",
        "base_model": {**{k: base_record.get(k) for k in ("model", "source", "revision", "commit", "pinned")},
                       "weights_sha256": base_record["files"].get("model.safetensors")},
        "seeds": list(seeds), "processes": info.world, "device": str(device.type),
        "environment": environment(), "data": meta["data_manifest"],
        "executed": executed_settings(settings.precision, settings.deterministic, device),
    }
    dumps_json({**common, "config": record_config})  # not JSON-serialisable: fail now, not after training
    return VariantInputs(info=info, device=device, model_dir=model_dir, base_record=base_record, meta=meta,
                         columns=columns, dev=dev, common=common)


def seed_logger(live, prefix: str) -> tuple[Callable, Callable]:
    """(log, replay) for one seed: log a step's values to dvclive under ``<prefix>/``; replay a history."""
    def log(step: int, values: dict) -> None:
        live.step = step
        for name, value in values.items():
            live.log_metric(f"{prefix}/{name}", value, plot=True)

    def replay(history) -> None:
        for step, values in history:
            log(step, values)

    return log, replay


def already_trained(record_path: Path, fingerprint: str, info: D.DistInfo, seed: int) -> bool:
    """Whether the resume area holds this seed trained under ``fingerprint`` (every process must agree)."""
    trained = record_path.is_file() and json.loads(record_path.read_text())["fingerprint"] == fingerprint
    D.check_same(trained, info, what=f"{record_path}: seed {seed} already trained",
                 hint="every machine must see the same resume folder (a shared filesystem), or remove it on all")
    return trained


def seed_record(common: dict, *, seed: int, fingerprint: str, record_config: dict, result) -> dict:
    """One seed's training.json: the variant's fixed part plus this seed's training results."""
    record = {
        **common, "seed": seed, "fingerprint": fingerprint, "config": {**record_config, "seed": seed},
        "selected_step": result.selected_step, "best_dev": result.best_dev,
        "total_steps": result.total_steps, "dev_history": result.dev_history,
    }
    if result.setting_changes:  # resumed from a state kept after a non-finite loss
        record["resumed_with_changed_settings"] = result.setting_changes
    if result.no_finite_dev:
        record["selection_fallback"] = "no finite KorSTS dev score at any evaluation: the last step is kept"
    return record


def train_variant_seed(settings: TrainSettings, inputs: VariantInputs, *, seed: int, variant: str,
                       record_config: dict, resume: Path, live) -> dict:
    """Train one seed into ``<resume>/seed-<s>/done`` (or find it there already); returns its timing facts."""
    info, prefix = inputs.info, f"seed-{seed}"
    fp, resume_key = run_fingerprints(settings, seed=seed, tokens=inputs.meta, base=inputs.base_record["files"],
                                      world=info.world)
    seed_dir = resume / prefix
    done = seed_dir / "done"
    record_path = done / "training.json"
    log, replay = seed_logger(live, prefix) if live is not None else (None, None)
    if already_trained(record_path, fp, info, seed):
        record = json.loads(record_path.read_text())
        if live is not None:
            replay(json.loads((seed_dir / "history.json").read_text()))
            summarize_selected(live, prefix, record["selected_step"], record["best_dev"])
        print(f"seed {seed}: already trained (resume area), step {record['selected_step']} selected", flush=True)
        return {"already_trained": True}
    if info.is_main:
        shutil.rmtree(done, ignore_errors=True)
    try:
        result = train_seed(settings, seed=seed, model_dir=inputs.model_dir, columns=inputs.columns, dev=inputs.dev,
                            out_dir=done, state_path=seed_dir / "state.pt", fingerprint_value=fp,
                            device=inputs.device, info=info, log=log, replay=replay, resume_key=resume_key)
    except NonFiniteLoss as exc:
        raise UserError(f"variant {variant}, {exc}") from None
    record = seed_record(inputs.common, seed=seed, fingerprint=fp, record_config=record_config, result=result)
    if live is not None:
        summarize_selected(live, prefix, result.selected_step, result.best_dev)
    if info.is_main:
        write_json(seed_dir / "history.json", [[step, values] for step, values in result.history])
        write_json(record_path, record)
        (seed_dir / "state.pt").unlink(missing_ok=True)
        nonfinite_marker(seed_dir / "state.pt").unlink(missing_ok=True)
    print(f"seed {seed}: selected step {result.selected_step}/{result.total_steps}, dev {result.best_dev}",
          flush=True)
    # operational facts (time, resumption) stay out of the model folder, which must be reproducible
    return {"wall_seconds": round(result.wall_seconds, 2), "resumed_from_step": result.resumed_from}


def publish(out: Path, resume: Path, seeds: Sequence[int]) -> None:
    """Write ``out`` (atomically) from every seed's ``done`` folder, then remove the scratch area."""
    with atomic_dir(out) as tmp:
        for seed in seeds:
            shutil.copytree(resume / f"seed-{seed}" / "done", tmp / f"seed-{seed}")
    shutil.rmtree(resume, ignore_errors=True)  # scratch: only needed until the stage succeeds


def train_variant(
    settings: TrainSettings,
    *,
    variant: str,
    model: str,
    data: str,
    seeds: Sequence[int],
    record_config: dict,
    tokens: Path,
    models: Path,
    out: Path,
    live_dir: Path,
    resume: Path,
    device_name: str = "cuda",
) -> dict:
    """Train every seed of one variant; write ``out/seed-<s>/`` and dvclive logs under ``live_dir``.

    Args:
        settings: the run's hyperparameters.
        variant: the variant's name (recorded).
        model: the base model id (as in params; checked against the folder's manifest).
        data: ``wiki`` (one ``sent`` column, each sentence its own positive) or
            ``nli`` (``anchor``, ``positive``, ``negative`` columns).
        seeds: the seeds to train, in order.
        record_config: the variant's settings as written into each ``training.json``.
        tokens: the tokenize stage's folder (columns, dev set, meta.json).
        models: the variant's base-model folder (fetch_model stage: files and manifest.json).
        out: the models folder to write.
        live_dir: the dvclive folder (metrics per ``seed-<s>/`` prefix).
        resume: scratch folder for resumable state; removed on success.
        device_name: the ``device`` param (``cuda`` or ``cpu``); ``cuda`` without a GPU is a UserError.

    Returns:
        {seed: timing facts} (wall seconds and resumed step, or ``already_trained``).
    """
    from dvclive import Live

    inputs = load_variant(settings, variant=variant, model=model, data=data, seeds=seeds,
                          record_config=record_config, tokens=tokens, models=models, out=out, live_dir=live_dir,
                          resume=resume, device_name=device_name)
    info = inputs.info
    live = Live(dir=str(live_dir), dvcyaml=None, save_dvc_exp=False, report=None) if info.is_main else None
    timings: dict = {}
    try:
        for seed in seeds:
            timings[seed] = train_variant_seed(settings, inputs, seed=seed, variant=variant,
                                               record_config=record_config, resume=resume, live=live)
    finally:
        if live is not None:
            live.end()
    # Not in the `finally`: a process that failed alone must exit (its torchrun agent then stops the
    # job), not wait at a barrier while the others wait in a collective of the step it left.
    D.barrier(info)
    if info.is_main:
        publish(out, resume, seeds)
    D.shutdown(info)
    return timings
