"""Base models and published checkpoints: a hub id at a pinned revision, or a local folder.

Whatever the source, the result is a local folder with safetensors weights,
config and tokenizer, plus a record of where it came from: the hub commit the
revision resolved to (so a branch name still leaves an exact record) and the
sha256 of every file. ``pytorch_model.bin`` is converted with torch's
weights-only loader, never fully unpickled; ``trust_remote_code`` is never set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from pipeline.download import sha256_file
from pipeline.errors import UserError
from pipeline.modeling import PICKLE_WEIGHTS, SAFETENSORS, check_model_folder, convert_pickle_weights

#: The record a fetched base-model folder carries beside its files (see :func:`models_manifest`).
MANIFEST = "manifest.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: Files a sentence encoder needs besides its weights (whichever of them the repo has).
SIDE_FILES = (
    "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
    "vocab.json", "merges.txt", "added_tokens.json", "sentencepiece.bpe.model", "spiece.model",
)
#: The sentence-transformers files that say how a repository defines its embedding (pooling, Normalize,
#: prompts, length); fetched where present for models evaluated as their own cards define them, and read
#: by pipeline.stfolder (the Pooling config at its usual path).
ST_FILES = ("modules.json", "1_Pooling/config.json", "config_sentence_transformers.json",
            "sentence_bert_config.json")
#: Any one of these file sets is a tokenizer transformers can load (fast, WordPiece, BPE, SentencePiece).
TOKENIZER_SETS = (("tokenizer.json",), ("vocab.txt",), ("vocab.json", "merges.txt"), ("sentencepiece.bpe.model",),
                  ("spiece.model",))


def is_local(model: str) -> bool:
    """True if ``model`` names an existing local folder (checked before the hub-id form)."""
    return Path(model).is_dir()


def model_slug(model: str) -> str:
    """Folder name under data/models for a model: ``klue/bert-base`` -> ``klue--bert-base``."""
    if is_local(model) or not HUB_ID.match(model):
        return "local--" + Path(model).resolve().name
    return model.replace("/", "--")


def is_commit(revision: str | None) -> bool:
    """True for a full 40-hex commit hash (a pin); False for a branch or tag name."""
    return bool(revision) and bool(COMMIT.match(revision))


def _copy_local(folder: Path, dest: Path) -> dict[str, str]:
    check_model_folder(folder)
    dest.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    names = [n for n in SIDE_FILES if (folder / n).is_file()]
    for name in names:
        shutil.copyfile(folder / name, dest / name)
    if (folder / SAFETENSORS).is_file():
        shutil.copyfile(folder / SAFETENSORS, dest / SAFETENSORS)
    else:
        convert_pickle_weights(folder / PICKLE_WEIGHTS, dest / SAFETENSORS)
    for name in sorted(p.name for p in dest.iterdir() if p.is_file()):
        files[name] = sha256_file(dest / name)
    return files


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's network errors: huggingface_hub 2 talks through httpx2, whose are not OSErrors."""
    try:
        import httpx2
    except ImportError:
        return ()
    return (httpx2.TransportError,)


def _hub_call(fn, what: str, retries: int = 4, backoff: float = 2.0):
    """Run a hub call, retrying transient network errors; map the rest to one-line errors."""
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, HFValidationError,
                                        LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    attempt = 0
    while True:
        try:
            return fn()
        except OfflineModeIsEnabled:
            raise UserError(f"{what}: HF_HUB_OFFLINE is set; unset it to reach the hub, "
                            "or pass a local folder") from None
        except RevisionNotFoundError:
            raise UserError(f"{what}: revision not found on the hub; check the pinned revision") from None
        except GatedRepoError:
            raise UserError(f"{what}: gated repository; accept its terms and set HF_TOKEN") from None
        except (RepositoryNotFoundError, HFValidationError):
            raise UserError(f"{what}: unknown hub id (or private without a token); "
                            "expected an existing model id or a local folder") from None
        except EntryNotFoundError as exc:
            if not isinstance(exc, LocalEntryNotFoundError):  # that subclass means "hub unreachable, not cached"
                raise UserError(f"{what}: file not found at that revision") from None
            error = exc
        except (HfHubHTTPError, ConnectionError, TimeoutError, OSError, *_transport_errors()) as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status is not None and status < 500 and status not in (408, 429):
                raise UserError(f"{what}: hub answered HTTP {status}") from None
            error = exc
        if attempt >= retries:
            raise UserError(f"{what}: cannot reach the Hugging Face hub after {attempt + 1} attempts "
                            f"({type(error).__name__}); check the network, or pass a local folder")
        delay = backoff * 2 ** attempt
        print(f"warning: {what}: {type(error).__name__}; retrying in {delay:.0f}s", flush=True)
        time.sleep(delay)
        attempt += 1


def required_files(available: set[str] | dict, what: str) -> tuple[str, tuple[str, ...]]:
    """The weights file and tokenizer files the pipeline will read from a model's file names.

    Returns:
        (weights name, tokenizer file names): safetensors preferred over ``pytorch_model.bin``.

    Raises:
        UserError: no config.json, no weights, or no complete tokenizer (naming ``what``).
    """
    if "config.json" not in available:
        raise UserError(f"{what}: no config.json; expected a Hugging Face model")
    weights = next((n for n in (SAFETENSORS, PICKLE_WEIGHTS) if n in available), None)
    if weights is None:
        raise UserError(f"{what}: no {SAFETENSORS} or {PICKLE_WEIGHTS} in the repository")
    tokenizer = next((names for names in TOKENIZER_SETS if all(n in available for n in names)), None)
    if tokenizer is None:
        raise UserError(f"{what}: no tokenizer files (expected tokenizer.json, vocab.txt or vocab.json + merges.txt)")
    return weights, tokenizer


def repo_listing(repo_id: str, revision: str, retries: int = 4) -> tuple[str, dict[str, int | None]]:
    """(commit the revision resolves to, {file name: size in bytes or None}) of a hub model.

    Raises:
        UserError: unknown id, unknown revision, unreachable hub (one line naming ``repo_id@revision``).
    """
    from huggingface_hub import HfApi

    info = _hub_call(lambda: HfApi().model_info(repo_id, revision=revision, files_metadata=True),
                     f"{repo_id}@{revision}", retries=retries)
    return info.sha, {s.rfilename: s.size for s in (info.siblings or [])}


def read_hub_config(repo_id: str, commit: str, retries: int = 4) -> dict:
    """The ``config.json`` of a hub model at ``commit`` (a few hundred bytes, cached by huggingface_hub)."""
    import json

    from huggingface_hub import hf_hub_download

    path = _hub_call(lambda: hf_hub_download(repo_id, "config.json", revision=commit),
                     f"{repo_id}@{commit} config.json", retries=retries)
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _link(cached: Path | str, target: Path) -> None:
    """Put the hub cache's file at ``target`` without a second copy: a symlink to its blob, else a hard
    link, else (a filesystem with neither) a copy."""
    blob = Path(cached).resolve()
    try:
        os.symlink(blob, target)
    except OSError:
        try:
            os.link(blob, target)
        except OSError:
            shutil.copyfile(blob, target)


def fetch_hub_files(repo_id: str, commit: str, names, dest: Path, retries: int = 4) -> None:
    """Put the named files of a hub model at ``commit`` into ``dest`` (linked from the hub cache): the
    small config files a check reads without the weights."""
    from huggingface_hub import hf_hub_download

    for name in names:
        cached = _hub_call(lambda: hf_hub_download(repo_id, name, revision=commit), f"{repo_id}@{commit} {name}",
                           retries=retries)
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        _link(cached, dest / name)


def _fetch_hub(repo_id: str, revision: str, dest: Path, extra: tuple[str, ...] = (),
               link: bool = False) -> tuple[str, dict[str, str]]:
    from huggingface_hub import hf_hub_download

    what = f"{repo_id}@{revision}"
    commit, available = repo_listing(repo_id, revision)
    weights, _ = required_files(available, what)
    wanted = [n for n in SIDE_FILES + extra if n in available] + [weights]
    dest.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        cached = _hub_call(lambda: hf_hub_download(repo_id, name, revision=commit), f"{what} {name}")
        if name == PICKLE_WEIGHTS:
            convert_pickle_weights(cached, dest / SAFETENSORS)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (_link if link else shutil.copyfile)(cached, dest / name)
    files = {p.relative_to(dest).as_posix(): sha256_file(p) for p in sorted(dest.rglob("*")) if p.is_file()}
    return commit, files


def fetch_model(model: str, revision: str | None, dest: Path | str, *, st_files: bool = False,
                link: bool = False) -> dict:
    """Materialise ``model`` (hub id or local folder) as a local safetensors folder at ``dest``.

    Args:
        model: a local folder, or a hub id such as ``klue/bert-base``.
        revision: for a hub id, a commit hash (pinned) or a branch/tag (resolved
            and recorded, with a warning).
        dest: the folder to fill (normally a temporary one, renamed by the caller).
        st_files: also fetch the hub repository's sentence-transformers files (:data:`ST_FILES`).
        link: fill ``dest`` from a hub id with links into the hub cache, not copies (for a folder that is
            read and deleted, so the weights are stored once); ``pytorch_model.bin`` is still converted.

    Returns:
        a manifest record: source, requested revision, resolved commit, whether it
        was pinned, sha256 per file.
    """
    dest = Path(dest)
    if is_local(model):
        files = _copy_local(Path(model), dest)
        return {"source": model, "kind": "local", "revision": None, "commit": None, "pinned": True,
                "files": files}
    if not HUB_ID.match(model):
        raise UserError(f"model {model!r}: not a local folder and not a hub id (expected org/name)")
    revision = revision or "main"
    commit, files = _fetch_hub(model, revision, dest, ST_FILES if st_files else (), link=link)
    pinned = is_commit(revision)
    if not pinned:
        print(f"warning: {model}: revision {revision!r} is a branch or tag, not a commit; it resolved to "
              f"{commit}. Pin that commit in params.yaml for an exact reproduction.", flush=True)
    return {"source": f"https://huggingface.co/{model}", "kind": "hub", "revision": revision, "commit": commit,
            "pinned": pinned, "files": files}


def models_manifest(folder: Path | str) -> dict[str, dict]:
    """{model slug: fetch record} of every base-model folder under ``folder`` (data/models/<variant>/).

    Variants that share a base model share one entry; the records come from each
    folder's :data:`MANIFEST`, written by the fetch_model stage.
    """
    records: dict[str, dict] = {}
    for path in sorted(Path(folder).glob(f"*/{MANIFEST}")):
        record = json.loads(path.read_text(encoding="utf-8"))
        records.setdefault(model_slug(record["model"]), record)
    return records
