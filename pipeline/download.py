"""Fetch a file from a URL, a ``file://`` URL or a local path; verify its sha256; record it.

One code path serves the GPU machine (https), the offline smoke run (local
paths) and the tests (``file://`` and a loopback HTTP server). Transient
failures (connection resets, timeouts, 5xx, a body cut short) are retried with
exponential backoff; a 404, a hash mismatch or exhausted retries end in one
:class:`~pipeline.errors.UserError` line naming the URL, and nothing is left at
the destination.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from pipeline.errors import UserError

CHUNK = 1 << 20  # 1 MiB: large enough for throughput, small enough for a smooth progress bar
USER_AGENT = "simcse-ko-repro (+https://dvc.org)"


@dataclass(frozen=True)
class Fetched:
    """What was fetched: the URL as resolved, its sha256 and size, and whether the hash was pinned."""

    source: str
    sha256: str
    bytes: int
    pinned: bool


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_source(url: str, revision: str | None = None, base: Path | str = ".") -> str:
    """Fill ``{revision}`` into a URL template; turn a relative local path into an absolute one."""
    if "{revision}" in url:
        if not revision:
            raise UserError(f"source {url}: has a {{revision}} placeholder but no revision is set")
        url = url.replace("{revision}", revision)
    if "://" not in url:
        path = Path(url)
        if not path.is_absolute():
            path = Path(base) / path
        return str(path)
    return url


def _bar_off(progress: bool) -> bool | None:
    # tqdm's None = off unless stderr is a terminal: bars in a piped or logged stderr
    # bury the one-line error that must be the only thing there.
    return None if progress else True


def _is_transient_http(code: int) -> bool:
    return code in (408, 425, 429) or 500 <= code < 600


def _http_error(url: str, exc: urllib.error.HTTPError, attempts: int) -> UserError:
    if exc.code == 404:
        return UserError(f"{url}: HTTP 404 not found; check the URL and its pinned revision")
    return UserError(f"{url}: HTTP {exc.code} {exc.reason} after {attempts} attempt(s)")


def _network_error(url: str, exc: Exception, attempts: int) -> UserError:
    return UserError(f"{url}: download failed after {attempts} attempts "
                     f"({type(exc).__name__}: {getattr(exc, 'reason', exc)}); check the network and retry")


def _stream_http(url: str, dest, timeout: float, progress: bool) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=os.path.basename(urllib.parse.urlparse(url).path) or url,
                  disable=_bar_off(progress), leave=False) as bar:
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                dest.write(block)
                received += len(block)
                bar.update(len(block))
        if total is not None and received != total:
            raise http.client.IncompleteRead(b"", total - received)


def _copy_local(path: Path, dest, progress: bool) -> None:
    with open(path, "rb") as src, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                        unit_divisor=1024, desc=path.name, disable=_bar_off(progress),
                                        leave=False) as bar:
        for block in iter(lambda: src.read(CHUNK), b""):
            dest.write(block)
            bar.update(len(block))


def fetch(
    url: str,
    dest: Path | str,
    *,
    sha256: str | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
) -> Fetched:
    """Fetch ``url`` (https, http, file:// or a local path) to ``dest`` and verify it.

    Args:
        url: where the bytes come from; relative paths must already be resolved
            (see :func:`resolve_source`).
        dest: final path; written atomically, so it exists only if verified.
        sha256: expected hex digest; ``None`` records the digest instead of checking it.
        retries: extra attempts after a transient failure (network, 5xx, truncated body).
        backoff: seconds before the first retry, doubled each time.
        timeout: socket timeout per attempt, in seconds.
        progress: show a tqdm bar of bytes received (only when stderr is a terminal).

    Returns:
        :class:`Fetched` with the digest and size.

    Raises:
        UserError: 404 or another client error, a missing local file, exhausted
            retries, or a sha256 mismatch (the downloaded bytes are discarded).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    local = _local_source(url)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        _write_with_retries(url, fd, local, retries=retries, backoff=backoff, timeout=timeout, progress=progress)
        os.close(fd)
        fd = -1
        digest = sha256_file(tmp)
        if sha256 is not None and digest != sha256.lower():
            raise UserError(f"{url}: sha256 mismatch: expected {sha256.lower()}, got {digest}; file not kept")
        size = tmp.stat().st_size
        os.replace(tmp, dest)
    finally:
        if fd != -1:
            os.close(fd)
        if tmp.exists():
            tmp.unlink()
    return Fetched(source=url, sha256=digest, bytes=size, pinned=sha256 is not None)


def _local_source(url: str) -> Path | None:
    """The file a ``file://`` URL or a plain path names (it must exist); ``None`` for a network URL."""
    parsed = urllib.parse.urlparse(url)
    local = None
    if parsed.scheme == "file":
        local = Path(urllib.request.url2pathname(parsed.path))
    elif "://" not in url:
        local = Path(url)
    if local is not None and not local.is_file():
        raise UserError(f"{url}: source file not found")
    return local


def _write_with_retries(url: str, fd: int, local: Path | None, *, retries: int, backoff: float, timeout: float,
                        progress: bool) -> None:
    """Write ``url``'s bytes to the open file ``fd`` from its start, retrying transient network failures
    (see :func:`fetch`); a local file is read once."""
    attempt = 0
    while True:
        try:
            with os.fdopen(os.dup(fd), "wb") as handle:
                handle.seek(0)
                handle.truncate()
                if local is not None:
                    _copy_local(local, handle, progress)
                else:
                    _stream_http(url, handle, timeout, progress)
            return
        except urllib.error.HTTPError as exc:
            if not _is_transient_http(exc.code) or attempt >= retries:
                raise _http_error(url, exc, attempt + 1) from None
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            if local is not None:
                raise UserError(f"{url}: cannot read source file ({exc})") from None
            if attempt >= retries:
                raise _network_error(url, exc, attempt + 1) from None
            reason = type(exc).__name__
        delay = backoff * (2 ** attempt)
        print(f"warning: {url}: {reason}; retrying in {delay:.1f}s ({attempt + 1}/{retries})", flush=True)
        time.sleep(delay)
        attempt += 1


def _size_of(response) -> int | None:
    """Total size from a HEAD (Content-Length) or a ranged GET (Content-Range: bytes 0-0/TOTAL)."""
    span = response.headers.get("Content-Range", "")
    if "/" in span and span.rsplit("/", 1)[1].isdigit():
        return int(span.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


class _KeepMethod(urllib.request.HTTPRedirectHandler):
    """Follow redirects with the same method: urllib turns a redirected HEAD into a GET."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            new.method = req.get_method()
        return new


def _probe_http(url: str, timeout: float) -> int | None:
    headers = {"User-Agent": USER_AGENT}
    try:
        with urllib.request.build_opener(_KeepMethod).open(
                urllib.request.Request(url, headers=headers, method="HEAD"), timeout=timeout) as response:
            return _size_of(response)
    except urllib.error.HTTPError as exc:
        # A 404 is an answer. Other refusals of HEAD (405, or 403 from a storage URL signed for
        # GET only, as GitHub release assets are) get a one-byte GET instead.
        if exc.code in (404, 410) or _is_transient_http(exc.code):
            raise
    request = urllib.request.Request(url, headers={**headers, "Range": "bytes=0-0"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return _size_of(response)  # closed unread: a server that ignores Range sends no more than we read


def remote_size(url: str, *, retries: int = 2, backoff: float = 1.0, timeout: float = 30.0) -> int | None:
    """Check that ``url`` (https, http, file:// or a local path) is there, without downloading it.

    http(s) is asked with HEAD, or a ranged GET of one byte where HEAD is refused; transient
    failures are retried as in :func:`fetch`.

    Returns:
        the size in bytes, or None when the server does not say.

    Raises:
        UserError: a 404 or other client error, a missing local file, or exhausted retries
            (the same lines as :func:`fetch`).
    """
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file" or "://" not in url:
        local = Path(urllib.request.url2pathname(parsed.path)) if parsed.scheme == "file" else Path(url)
        if not local.is_file():
            raise UserError(f"{url}: source file not found")
        return local.stat().st_size
    attempt = 0
    while True:
        try:
            return _probe_http(url, timeout)
        except urllib.error.HTTPError as exc:
            if not _is_transient_http(exc.code) or attempt >= retries:
                raise _http_error(url, exc, attempt + 1) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            if attempt >= retries:
                raise _network_error(url, exc, attempt + 1) from None
        time.sleep(backoff * 2 ** attempt)
        attempt += 1


def copy_verified(src: Path | str, dest: Path | str) -> str:
    """Copy a local file atomically and return its sha256 (used for model folders)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return sha256_file(dest)
