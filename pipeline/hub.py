"""Base models and published checkpoints: a hub id at a pinned revision, or a local folder.

Whatever the source, the result is a local folder with safetensors weights,
config and tokenizer, plus a record of where it came from: the hub commit the
revision resolved to (so a branch name still leaves an exact record) and the
sha256 of every file. ``pytorch_model.bin`` is converted with torch's
weights-only loader, never fully unpickled; ``trust_remote_code`` is never set.

Every hub call ends: each request has a timeout (:data:`HUB_TIMEOUT_S`), and
:func:`_hub_call` is the one retry layer (huggingface_hub's own retries are
switched off while it runs), with a bounded wait (:data:`HUB_MAX_WAIT_S`).
Failures end in one line naming the repository, revision and file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

from pipeline.download import sha256_file
from pipeline.errors import UserError
from pipeline.stfolder import PICKLE_WEIGHTS, SAFETENSORS, check_model_folder

# pipeline.modeling (torch) is imported only where pickle weights are converted: the stages that name or
# fetch models (validate, fetch_model, report) start without importing torch

#: The record a fetched base-model folder carries beside its files (see :func:`models_manifest`).
MANIFEST = "manifest.json"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: Seconds one hub request may stall (connect, or wait for the next bytes) before it counts as failed. A slow
#: transfer that keeps moving is never cut; a stalled one ends after this.
HUB_TIMEOUT_S = 10.0
#: Retries after the first attempt of a hub call: the only retry layer (huggingface_hub's own are switched off
#: while our calls run, see :func:`_one_retry_layer`), so waits do not multiply.
HUB_RETRIES = 4
#: First wait between attempts, doubled after each (2, 4, 8, 16 s).
HUB_BACKOFF_S = 2.0
#: Requests one attempt can spend waiting on a dead hub: hf_hub_download's HEAD, the second HEAD it sends when
#: the first fails, the GET. A dead hub ends a file's download (or a listing, with one request) within
#: (HUB_RETRIES + 1) * HUB_REQUESTS_PER_ATTEMPT * HUB_TIMEOUT_S + HUB_MAX_WAIT_S = 180 s.
HUB_REQUESTS_PER_ATTEMPT = 3
#: OSError numbers no retry fixes: the download cannot be written (disk full, read-only, no permission).
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)
TOKEN_HINT = "set HF_TOKEN or run `hf auth login` with a token that can read it"
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
        from pipeline.modeling import convert_pickle_weights

        convert_pickle_weights(folder / PICKLE_WEIGHTS, dest / SAFETENSORS)
    for name in sorted(p.name for p in dest.iterdir() if p.is_file()):
        files[name] = sha256_file(dest / name)
    return files


def retry_waits(retries: int, backoff: float) -> list[float]:
    """The sleeps between the attempts of one hub call: ``backoff * 2**k`` for each retry ``k``.

    Their sum is the bound on the time a failing hub call spends waiting between attempts
    (:data:`HUB_MAX_WAIT_S` with the defaults); each request of an attempt ends within
    :data:`HUB_TIMEOUT_S` of its last received byte.
    """
    return [backoff * 2 ** k for k in range(retries)]


#: Most seconds one failing hub call sleeps between its attempts, by default (2 + 4 + 8 + 16).
HUB_MAX_WAIT_S = sum(retry_waits(HUB_RETRIES, HUB_BACKOFF_S))


@contextlib.contextmanager
def _one_retry_layer(timeout: float) -> Iterator[None]:
    """Make huggingface_hub's download internals single-attempt with a ``timeout``, for the duration.

    hf_hub_download retries on its own (a second HEAD with five more retries and a 60 s timeout; five more
    GETs, 1 s apart), which nested in our retries multiplied the waits. What is kept: a GET that broke
    after bytes arrived resumes where it broke (after huggingface_hub's 1 s pause), as long as bytes
    arrive. Its download timeout is read from ``constants.HF_HUB_DOWNLOAD_TIMEOUT`` at call time.
    Errors from the hf_xet transfer (RuntimeError, ConnectionError, ... from Rust) become
    huggingface_hub's own ``XetDownloadError`` so that they are retried like any transfer error.
    The patches are undone on exit; hub calls are not made from threads.
    """
    from huggingface_hub import constants, file_download
    from huggingface_hub.errors import XetDownloadError

    metadata, http_get, xet_get = (file_download.get_hf_file_metadata, file_download.http_get,
                                   file_download.xet_get)

    def single_head(*args, **kwargs):
        return metadata(*args, **{**kwargs, "retry_on_errors": False, "timeout": timeout})

    def single_get(*args, **kwargs):
        # No retry without progress; after bytes arrived, http_get resets its count and calls http_get (this
        # wrapper) again with a Range: a cut transfer resumes while data flows (huggingface_hub 2.4 deletes a
        # partial file when the call fails, so our retry would start a 2 GB file again from its first byte).
        return http_get(*args, **{**kwargs, "_nb_retries": 0})

    def xet_transfer(*args, **kwargs):
        try:
            return xet_get(*args, **kwargs)
        except Exception as exc:  # hf_xet raises plain RuntimeError/OSError subclasses from Rust
            raise XetDownloadError(f"{type(exc).__name__}: {exc}") from exc

    saved, log = constants.HF_HUB_DOWNLOAD_TIMEOUT, logging.getLogger("huggingface_hub")
    level = log.level
    constants.HF_HUB_DOWNLOAD_TIMEOUT = timeout
    log.setLevel(logging.ERROR)  # its retry warnings would add stderr lines; ours say what is retried
    file_download.get_hf_file_metadata, file_download.http_get, file_download.xet_get = (
        single_head, single_get, xet_transfer)
    try:
        yield
    finally:
        constants.HF_HUB_DOWNLOAD_TIMEOUT = saved
        log.setLevel(level)
        file_download.get_hf_file_metadata, file_download.http_get, file_download.xet_get = (
            metadata, http_get, xet_get)


def _fatal_message(exc: BaseException) -> str | None:
    """The one-line reason for a hub error no retry can fix, or None for a transient one."""
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError, HFValidationError,
                                        LocalEntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
                                        RevisionNotFoundError, XetDownloadError)

    status = getattr(getattr(exc, "response", None), "status_code", None)
    cause = exc.__cause__ if isinstance(exc, XetDownloadError) else None
    if isinstance(exc, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set; unset it to reach the hub, or pass a local folder"
    if isinstance(exc, RevisionNotFoundError):
        return "revision not found on the hub; check the pinned revision"
    if isinstance(exc, GatedRepoError):
        return f"gated repository; accept its terms on the hub, then {TOKEN_HINT}"
    if isinstance(exc, (RepositoryNotFoundError, HFValidationError)):
        return ("unknown hub id (or private without a token); expected an existing model id or a local folder "
                f"(for a private one, {TOKEN_HINT})")
    if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
        return "file not found at that revision"  # LocalEntryNotFoundError: hub unreachable and not cached
    if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
        return (f"cannot write the download ({exc.strerror}: {exc.filename}); free disk space, or set HF_HOME "
                "to a writable disk with room")
    if status in (401, 403) or type(cause).__name__ == "XetAuthenticationError":
        return f"the hub refused access (HTTP {status or 401}); {TOKEN_HINT}"
    if isinstance(exc, HfHubHTTPError) and status is not None and status < 500 and status not in (408, 429):
        return f"hub answered HTTP {status}"
    return None


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Errors a retry may fix: HTTP (5xx, 408, 429), network, timeouts, a cut transfer, the hf_xet transfer.

    huggingface_hub 2 talks through httpx2, whose errors are not OSErrors; a GET that ends short is an
    OSError ("Consistency check failed"); hf_xet's errors arrive as ``XetDownloadError`` (see
    :func:`_one_retry_layer`).
    """
    import httpx2
    from huggingface_hub.errors import XetDownloadError

    return (OSError, httpx2.TransportError, httpx2.TooManyRedirects, XetDownloadError)


def _hub_call(fn, what: str, retries: int | None = None, backoff: float | None = None):
    """Run one hub call under :func:`_one_retry_layer`, retrying transient errors; end in one-line errors.

    Args:
        fn: the call (model_info, hf_hub_download, ...), made with :data:`HUB_TIMEOUT_S` where it takes one.
        what: names the repository, revision and file in messages (``org/name@rev file``).
        retries: retries after the first attempt (default :data:`HUB_RETRIES`).
        backoff: first wait in seconds (default :data:`HUB_BACKOFF_S`); the waits are :func:`retry_waits`.

    Returns:
        what ``fn`` returns.

    Raises:
        UserError: a fatal error at once, or the last transient one after ``retries`` retries.
    """
    from huggingface_hub.errors import HFValidationError

    waits = retry_waits(HUB_RETRIES if retries is None else retries, HUB_BACKOFF_S if backoff is None else backoff)
    for attempt in range(len(waits) + 1):
        try:
            with _one_retry_layer(HUB_TIMEOUT_S):
                return fn()
        except (*_transient_errors(), HFValidationError) as exc:
            reason = _fatal_message(exc)
            if reason is not None:
                raise UserError(f"{what}: {reason}") from None
            error = exc
        if attempt == len(waits):
            break
        print(f"warning: {what}: {_describe(error)}; retrying in {waits[attempt]:g}s "
              f"({attempt + 1}/{len(waits)})", flush=True)
        time.sleep(waits[attempt])
    raise UserError(f"{what}: cannot reach the Hugging Face hub after {len(waits) + 1} attempts "
                    f"({_describe(error)}); check the network or proxy, retry later, "
                    "or pass a local folder")


def _describe(error: BaseException) -> str:
    """``Type: first line`` of the error behind ``error`` (hf_hub_download wraps a failed HEAD in
    LocalEntryNotFoundError), cut to 160 characters: httpx's messages carry URLs and advice."""
    error = error.__cause__ or error
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160] if text else 'no message'}"


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


def repo_listing(repo_id: str, revision: str, retries: int | None = None) -> tuple[str, dict[str, int | None]]:
    """(commit the revision resolves to, {file name: size in bytes or None}) of a hub model.

    Raises:
        UserError: unknown id, unknown revision, unreachable hub (one line naming ``repo_id@revision``).
    """
    from huggingface_hub import HfApi

    info = _hub_call(lambda: HfApi().model_info(repo_id, revision=revision, files_metadata=True, timeout=HUB_TIMEOUT_S),
                     f"{repo_id}@{revision}", retries=retries)
    return info.sha, {s.rfilename: s.size for s in (info.siblings or [])}


def read_hub_config(repo_id: str, commit: str, retries: int | None = None) -> dict:
    """The ``config.json`` of a hub model at ``commit`` (a few hundred bytes, cached by huggingface_hub)."""
    import json

    from huggingface_hub import hf_hub_download

    path = _hub_call(lambda: hf_hub_download(repo_id, "config.json", revision=commit, etag_timeout=HUB_TIMEOUT_S),
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

    from pipeline.modeling import convert_pickle_weights

    what = f"{repo_id}@{revision}"
    commit, available = repo_listing(repo_id, revision)
    weights, _ = required_files(available, what)
    wanted = [n for n in SIDE_FILES + extra if n in available] + [weights]
    dest.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        cached = _hub_call(lambda: hf_hub_download(repo_id, name, revision=commit, etag_timeout=HUB_TIMEOUT_S),
                           f"{what} {name}")
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
