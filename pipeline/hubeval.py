"""Hub checkpoints evaluated with our evaluation code, under the card's protocol.

Two stages use this: ``published`` (the card's four checkpoints, [CLS] as the card
evaluated them) and ``compare`` (params ``compare``: Korean sentence encoders people
use, each encoded as its own model card defines its embedding). Every checkpoint's
revision is resolved before any is evaluated, its commit and weights sha256 are
recorded, and a branch or tag instead of a commit is flagged as unpinned.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from pipeline.errors import UserError
from pipeline.params import Params, check_max_len, device_setting, eval_settings

POOLINGS = ("cls", "mean", "max")
#: the keys a `compare` entry may have
COMPARE_KEYS = ("id", "revision", "pooling", "normalize", "prefix", "sts_train")
#: sentence-transformers pooling modes this pipeline cannot reproduce (a model using one is refused)
UNSUPPORTED_MODES = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                     "pooling_mode_lasttoken")
_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max"}


@dataclass(frozen=True)
class Encoder:
    """One `compare` entry, validated.

    ``pooling`` empty and ``normalize`` None mean: as the repository's sentence-transformers
    files say (1_Pooling/config.json, modules.json); given, they must agree with those files.
    """

    id: str
    revision: str
    pooling: str = ""
    normalize: bool | None = None
    prefix: str = ""
    sts_train: str = ""  # the STS training data the model's card names ('' = none)


@dataclass(frozen=True)
class Embedding:
    """How a checkpoint was encoded, and where that came from."""

    pooling: str
    normalize: bool
    prefix: str
    origin: str


def eval_config(params: Params) -> dict:
    """The settings every hub-checkpoint evaluation reads (the card's protocol, as for our models)."""
    protocol, batch_size, bootstrap = eval_settings(params)
    return {"protocol": protocol, "batch_size": batch_size, "bootstrap": bootstrap,
            "max_len": check_max_len(params.source, "max_len", params.get("max_len")),
            "device": device_setting(params)}


def read_compare(params: Params) -> list[Encoder]:
    """The ``compare`` list, validated; ``[]`` (or empty) turns the comparison off."""
    from pipeline.hub import HUB_ID

    src, value = params.source, params.get("compare")
    if value is None or value == []:
        return []
    if not isinstance(value, list):
        raise UserError(f"{src}: compare = {value!r}: expected a list of {{id, revision, ...}} entries, or []")
    out: list[Encoder] = []
    for i, entry in enumerate(value):
        key = f"compare[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not HUB_ID.match(entry["id"]):
            raise UserError(f"{src}: {key} = {entry!r}: expected a mapping with id: <org>/<name> (a hub model)")
        unknown = sorted(set(entry) - set(COMPARE_KEYS))
        if unknown:
            raise UserError(f"{src}: {key}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(COMPARE_KEYS)}")
        pooling = entry.get("pooling") or ""
        if pooling not in ("", *POOLINGS):
            raise UserError(f"{src}: {key}.pooling = {pooling!r}: expected one of {', '.join(POOLINGS)}, or empty "
                            "(as the repository's sentence-transformers config says)")
        normalize = entry.get("normalize")
        if normalize not in (None, "", True, False):
            raise UserError(f"{src}: {key}.normalize = {normalize!r}: expected true, false or empty "
                            "(as the repository's modules.json says)")
        texts = {}
        for name in ("revision", "prefix", "sts_train"):
            text = entry.get(name)
            if text is not None and not isinstance(text, str):
                raise UserError(f"{src}: {key}.{name} = {text!r}: expected text")
            texts[name] = text or ""
        if any(e.id == entry["id"] for e in out):
            raise UserError(f"{src}: {key}: {entry['id']} is listed twice")
        out.append(Encoder(id=entry["id"], revision=texts["revision"], pooling=pooling,
                           normalize=None if normalize in (None, "") else normalize, prefix=texts["prefix"],
                           sts_train=texts["sts_train"]))
    return out


def declared_embedding(folder: Path | str) -> tuple[str | None, bool | None]:
    """(pooling, normalize) a model folder's sentence-transformers files declare; None where a file is absent.

    Raises:
        UserError: the pooling config uses a mode this pipeline does not implement.
    """
    folder = Path(folder)
    pooling = normalize = None
    config = folder / "1_Pooling" / "config.json"
    if config.is_file():
        cfg = json.loads(config.read_text(encoding="utf-8"))
        odd = [m for m in UNSUPPORTED_MODES if cfg.get(m)]
        modes = [name for key, name in _MODES.items() if cfg.get(key)]
        if odd or len(modes) != 1:
            raise UserError(f"{config.name} of {folder.name}: pooling modes {odd + modes or 'none'}; expected exactly "
                            f"one of {', '.join(_MODES)}")
        pooling = modes[0]
    modules = folder / "modules.json"
    if modules.is_file():
        normalize = any(str(m.get("type", "")).endswith("Normalize")
                        for m in json.loads(modules.read_text(encoding="utf-8")))
    return pooling, normalize


def embedding_for(entry: Encoder, folder: Path | str) -> Embedding:
    """How to encode ``entry``: its params where given, else its repository's sentence-transformers files.

    Raises:
        UserError: a given value contradicts the repository's files, or the pooling is known from neither.
    """
    declared_pool, declared_norm = declared_embedding(folder)
    what = f"compare: {entry.id}"
    if entry.pooling and declared_pool and entry.pooling != declared_pool:
        raise UserError(f"{what}: pooling {entry.pooling!r} in params.yaml, but the repository's "
                        f"1_Pooling/config.json says {declared_pool!r}; leave pooling empty to follow the repository")
    if entry.normalize is not None and declared_norm is not None and entry.normalize != declared_norm:
        raise UserError(f"{what}: normalize {str(entry.normalize).lower()} in params.yaml, but the repository's "
                        f"modules.json says {str(declared_norm).lower()}; leave normalize empty to follow it")
    pooling = entry.pooling or declared_pool
    if not pooling:
        raise UserError(f"{what}: the repository has no sentence-transformers pooling config "
                        "(1_Pooling/config.json); set pooling (cls, mean or max) as its model card defines it")
    normalize = entry.normalize if entry.normalize is not None else bool(declared_norm)
    from_repo = [name for name, found in (("pooling", declared_pool), ("Normalize", declared_norm))
                 if found is not None]
    if not (entry.pooling or entry.normalize is not None):
        origin = f"the repository's sentence-transformers files ({', '.join(from_repo)})"
    elif from_repo:
        origin = f"params.yaml (its model card), matching the repository's {' and '.join(from_repo)}"
    else:
        origin = "params.yaml (its model card); the repository has no sentence-transformers files"
    return Embedding(pooling=pooling, normalize=normalize, prefix=entry.prefix, origin=origin)


def resolve_revisions(models: Mapping[str, tuple[str, str]], key: str) -> None:
    """Resolve every {name: (hub id, revision)} before evaluating any: a revision that no longer
    resolves stops the stage in one line naming ``key.<name>``, not after the others ran."""
    from pipeline.hub import repo_listing

    for name, (model_id, revision) in models.items():
        try:
            repo_listing(model_id, revision or "main")
        except UserError as exc:
            raise UserError(f"{key}.{name}: {exc}") from None


def evaluate_checkpoint(model_id: str, revision: str, paths: Mapping[str, Path], cfg: Mapping[str, Any], *,
                        label: str, predictions_dir: Path, device: str,
                        entry: Encoder | None = None, mteb_rows: Mapping | None = None) -> tuple[dict, dict, Embedding]:
    """Fetch one hub checkpoint to a temporary folder and evaluate it with our code.

    Args:
        paths: the benchmark files ({"korsts_test": ..., "klue_dev": ...}).
        cfg: :func:`eval_config`.
        label: the predictions' run label.
        entry: a `compare` entry (encoded as its card defines it); None = the card's protocol
            ([CLS] of the last hidden state, no normalization, no prefix).
        mteb_rows: MTEB's own rows, scored too (see :func:`pipeline.evaluate.evaluate_folders`).

    Returns:
        (metrics, fetch record, the embedding used)
    """
    from pipeline.evaluate import evaluate_folders
    from pipeline.hub import fetch_model

    with tempfile.TemporaryDirectory(prefix="hub-eval-") as tmp:
        folder = Path(tmp) / "model"
        record = fetch_model(model_id, revision or None, folder, st_files=entry is not None)
        embedding = (embedding_for(entry, folder) if entry is not None
                     else Embedding("cls", False, "", "the card's protocol"))
        metrics = evaluate_folders(
            [folder], paths, protocol=cfg["protocol"], max_len=cfg["max_len"], batch_size=cfg["batch_size"],
            bootstrap=cfg["bootstrap"], pooler=embedding.pooling, normalize=embedding.normalize,
            prefix=embedding.prefix, labels=[label], predictions_dir=predictions_dir, device=device,
            mteb_rows=mteb_rows)
    return metrics, record, embedding


def embedding_text(record: Mapping[str, Any]) -> str:
    """How a manifest record's model was encoded, as the report's table shows it."""
    text = {"cls": "[CLS]", "mean": "mean", "max": "max"}.get(record.get("pooling", "cls"), record.get("pooling"))
    if record.get("normalize"):
        text += " + Normalize"
    if record.get("prefix"):
        text += f", prefix `{record['prefix']}`"
    return text


def hub_stage_main(argv: list[str] | None, *, description: str, stage: str,
                   read_params: Callable[[Params], dict], run: Callable[..., dict]) -> int:
    """The command line of the ``compare`` and ``published`` stages (``--raw --metrics --predictions
    [--timing] [--params]``): read the params, run the stage, record its wall time."""
    import argparse

    from pipeline.provenance import Timer, write_timing

    parser = argparse.ArgumentParser(description=description)
    for name in ("raw", "metrics", "predictions"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--mteb-rows", type=Path, help="the mteb_rows stage's file (MTEB's own rows)")
    parser.add_argument("--timing", type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with Timer() as timer:
        run(read_params(Params.load(args.params)), raw=args.raw, metrics_path=args.metrics,
            predictions=args.predictions, mteb_rows=args.mteb_rows)
    write_timing(args.timing, stage, timer.seconds)
    return 0
