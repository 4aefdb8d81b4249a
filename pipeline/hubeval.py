"""Hub checkpoints evaluated with our evaluation code, under the card's protocol.

Two stages use this: ``published`` (the card's four checkpoints, [CLS] as the card
evaluated them) and ``compare`` (params ``compare``: Korean sentence encoders people
use, each encoded as its own model card defines its embedding). Each checkpoint's
commit and weights sha256 are recorded, and a branch or tag instead of a commit is
flagged as unpinned. These are repositories we do not control: one that cannot be
scored is recorded with its reason and the others are scored (:func:`score_isolated`).
A repository's sentence-transformers files are read by :mod:`pipeline.stfolder`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from pipeline.errors import UserError
from pipeline.params import Params, check_max_len, device_setting, eval_settings
from pipeline.stfolder import POOLINGS, read_st_folder

#: the keys a `compare` entry may have
COMPARE_KEYS = ("id", "revision", "pooling", "normalize", "prefix", "sts_train")


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


def embedding_for(entry: Encoder, folder: Path | str) -> Embedding:
    """How to encode ``entry``: its params where given, else its repository's sentence-transformers files.

    Raises:
        UserError: a given value contradicts the repository's files, the pooling is known from neither, or
            the files declare what our evaluator cannot reproduce (see :mod:`pipeline.stfolder`).
    """
    what = f"compare: {entry.id}"
    try:
        declared = read_st_folder(folder)
    except UserError as exc:
        raise UserError(f"{what}: {exc}") from None
    declared_pool, declared_norm = declared.pooling, declared.normalize
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
    prefix = declared.prefix(entry.prefix, what)
    from_repo = [name for name, found in (("pooling", declared_pool), ("Normalize", declared_norm))
                 if found is not None]
    if not (entry.pooling or entry.normalize is not None):
        origin = f"the repository's sentence-transformers files ({', '.join(from_repo)})"
    elif from_repo:
        origin = f"params.yaml (its model card), matching the repository's {' and '.join(from_repo)}"
    else:
        origin = "params.yaml (its model card); the repository has no sentence-transformers files"
    if prefix and not entry.prefix:
        origin += "; prefix from its config_sentence_transformers.json default prompt"
    return Embedding(pooling=pooling, normalize=normalize, prefix=prefix, origin=origin)


#: How a model we do not control fails without it being a bug of ours: a UserError (revision resolution,
#: download, its files, a contradiction with params.yaml; pipeline.hub maps the hub client's transport errors
#: to one) or an OSError (a full disk, a broken file). Anything else is a bug in our code: it is not caught,
#: so the stage stops with its traceback, as every other stage does.
ISOLATED_ERRORS = (UserError, OSError)


def one_line(exc: BaseException) -> str:
    """An isolated failure as one line (a UserError is one already; an OSError gets its type)."""
    text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def score_isolated(what: str, failed: list[dict], record: Mapping[str, Any], score: Callable[[], Any]) -> Any:
    """``score()``, or None after recording why it failed (:data:`ISOLATED_ERRORS` only).

    One model that cannot be scored must not cost the others' scores (nor the report after a
    training run): its failure is appended to ``failed`` as ``{**record, "reason": one line}``
    for the stage's manifest, and a ``warning:`` line naming ``what`` is printed.
    """
    try:
        return score()
    except ISOLATED_ERRORS as exc:
        reason = one_line(exc)
        failed.append({**record, "reason": reason})
        said = reason.removeprefix(f"{what}: ")  # the error may name the model already
        print(f"warning: {what}: not scored, the others are: {said} (once fixed, rerun the stage with "
              "`dvc repro -f`: DVC counts this run as done)", flush=True)
        return None


def evaluate_checkpoint(model_id: str, revision: str, paths: Mapping[str, Path], cfg: Mapping[str, Any], *,
                        label: str, predictions_dir: Path, device: str,
                        entry: Encoder | None = None, mteb_rows: Mapping | None = None) -> tuple[dict, dict, Embedding]:
    """Fetch one hub checkpoint and evaluate it with our code.

    The temporary folder evaluated holds links into the hub cache, not copies (see
    :func:`pipeline.hub.fetch_model`), so each checkpoint's weights are stored once;
    ``pipeline.estimate.disk_needed`` counts them so. On failure no prediction file of
    ``label`` is left in ``predictions_dir``.

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
        record = fetch_model(model_id, revision or None, folder, st_files=entry is not None, link=True)
        embedding = (embedding_for(entry, folder) if entry is not None
                     else Embedding("cls", False, "", "the card's protocol"))
        try:
            metrics = evaluate_folders(
                [folder], paths, protocol=cfg["protocol"], max_len=cfg["max_len"], batch_size=cfg["batch_size"],
                bootstrap=cfg["bootstrap"], pooler=embedding.pooling, normalize=embedding.normalize,
                prefix=embedding.prefix, labels=[label], predictions_dir=predictions_dir, device=device,
                mteb_rows=mteb_rows)
        except BaseException:
            for partial in Path(predictions_dir).glob(f"*.{label}.tsv"):
                partial.unlink()
            raise
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
