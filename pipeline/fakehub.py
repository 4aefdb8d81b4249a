"""A loopback HTTP server that speaks the part of the Hugging Face hub API the pipeline uses.

``huggingface_hub`` (``model_info`` with file metadata, ``hf_hub_download``) talks to
``HF_ENDPOINT``; pointed at this server it reads model repositories from memory, so the
real download path (revision resolution, commit recording, file fetches, our retry and
error mapping) runs offline. The smoke run serves its comparison models from here, and
the tests serve tiny models, unknown ids and revisions and repos without a tokenizer.
With :class:`Faults` it also behaves as the real hub and network do at their worst:
large files redirected to a second loopback server (the hub's CDN), requests that stall,
transfers cut halfway, 401s; it counts every request, so tests assert attempts.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import http.server
import json
import socket
import threading
import urllib.parse
from pathlib import Path
from typing import Iterator, Mapping

#: {repo id: (commit, {path in the repo: bytes})}
Repos = Mapping[str, tuple[str, Mapping[str, bytes]]]


def folder_files(folder: Path | str) -> dict[str, bytes]:
    """Every file under ``folder`` as {posix path relative to it: bytes} (a repo's content)."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclasses.dataclass
class Faults:
    """How the fake hub misbehaves, for the client paths a well-behaved hub never takes.

    Requests are keyed ``"<METHOD> <route> <name>"``: route ``api`` (model_info; name is the repo id),
    ``resolve`` (a file under ``/<repo>/resolve/<rev>/``) or ``cdn`` (a redirected file); name the file path.
    """

    #: Files of at least this many bytes answer ``/resolve`` with a 302 to a second loopback server (the "CDN"),
    #: with X-Linked-Size/X-Linked-Etag as the real hub does for LFS and Xet files; None: never.
    redirect_from: int | None = None
    #: {request key: how many such requests sleep :attr:`stall_s` before answering (then answer late)}.
    stall: dict[str, int] = dataclasses.field(default_factory=dict)
    stall_s: float = 1.0
    #: {request key: how many such GETs send half the body and then drop the connection}.
    cut: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Redirected files also carry the Xet headers (hash, token refresh route) the real hub sends, so that
    #: the client downloads them through ``xet_get`` (which a test replaces: no Xet storage here).
    xet: bool = False
    #: Repo ids whose every request answers HTTP 401.
    unauthorized: frozenset[str] = frozenset()
    #: (request key, first byte) of every ranged request served: a resumed download.
    ranges: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    #: Requests received so far, by key (filled in by the server).
    seen: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def take(self, table: dict[str, int], key: str) -> bool:
        """Use up one of ``table[key]``'s planned faults; True if one was left."""
        with self.lock:
            if table.get(key, 0) <= 0:
                return False
            table[key] -= 1
            return True


def _range_start(header: str | None, size: int) -> int:
    """The first byte a ``Range: bytes=N-`` header asks for (0 without one); resumed downloads send it."""
    if header and header.startswith("bytes=") and header.endswith("-"):
        return min(int(header[len("bytes="):-1]), size)
    return 0


class _Hub(http.server.BaseHTTPRequestHandler):
    """The fake hub's handler; :func:`make_handler` binds it to its repositories and faults."""

    repos: Repos = {}
    faults: "Faults" = None  # type: ignore[assignment]
    cdn = ""  # the base URL large files redirect to (set by :func:`serve`)

    def log_message(self, *args):  # keep the caller's output clean
        pass

    def _error(self, code: str, status: int = 404) -> None:
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _repo(self, repo: str, rev: str):
        if repo in self.faults.unauthorized:
            return self._error("", 401)
        if repo not in self.repos:
            return self._error("RepoNotFound")
        commit, served = self.repos[repo]
        if rev not in ("main", commit):
            return self._error("RevisionNotFound")
        return commit, served

    def _model_info(self, repo: str, rev: str) -> bytes | None:
        found = self._repo(repo, rev)
        if found is None:
            return None
        commit, served = found
        body = json.dumps({"id": repo, "modelId": repo, "sha": commit, "private": False,
                           "siblings": [{"rfilename": n} for n in sorted(served)]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        return body.encode()

    def _file(self, repo: str, rev: str, name: str, route: str) -> bytes | None:
        found = self._repo(repo, rev)
        if found is None:
            return None
        commit, served = found
        if name not in served:
            return self._error("EntryNotFound")
        body, etag = served[name], '"' + hashlib.sha256(served[name]).hexdigest() + '"'
        if route == "resolve" and self.faults.redirect_from is not None and len(body) >= self.faults.redirect_from:
            self.send_response(302)  # the real hub sends LFS/Xet files to its CDN, metadata on the redirect
            self.send_header("Location", f"{self.cdn}/cdn/{repo}/{commit}/{name}")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", etag)
            self.send_header("X-Linked-Size", str(len(body)))
            if self.faults.xet:
                self.send_header("X-Xet-Hash", hashlib.sha256(body).hexdigest())
                self.send_header("X-Xet-Refresh-Route", f"/api/models/{repo}/xet-read-token/{commit}")
            return b""
        start = _range_start(self.headers.get("Range"), len(body))
        if start:
            with self.faults.lock:
                self.faults.ranges.append((f"{self.command} {route} {name}", start))
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", etag)
        return body[start:]

    def _parse(self):
        """(route, repo, revision, name) of the request path, or None for an unknown path."""
        parts = urllib.parse.urlparse(self.path).path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:  # /api/models/<org>/<name>[/revision/<rev>]
            repo = "/".join(parts[2:4])
            return "api", repo, parts[5] if len(parts) > 5 else "main", repo
        if len(parts) >= 5 and parts[2] == "resolve":  # /<org>/<name>/resolve/<rev>/<path>
            return "resolve", "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if len(parts) >= 5 and parts[0] == "cdn":  # /cdn/<org>/<name>/<commit>/<path>
            return "cdn", "/".join(parts[1:3]), parts[3], "/".join(parts[4:])
        return None

    def _route(self, method: str) -> None:
        parsed = self._parse()
        if parsed is None:
            return self._error("RepoNotFound")
        route, repo, rev, name = parsed
        key = f"{method} {route} {name}"
        with self.faults.lock:
            self.faults.seen[key] += 1
        if self.faults.take(self.faults.stall, key):
            # not time.sleep: tests count the client's sleeps, and this server runs in their process
            threading.Event().wait(self.faults.stall_s)
        body = self._model_info(repo, rev) if route == "api" else self._file(repo, rev, name, route)
        if body is None:
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method == "GET" and self.faults.take(self.faults.cut, key):
            self.wfile.write(body[: len(body) // 2])
            # the connection closes (an orderly FIN, so the client surely has the first half) mid-body
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif method == "GET":
            self.wfile.write(body)

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except OSError:
            self.close_connection = True  # the client left (a stall outlived its timeout, or a reset)

    def do_GET(self):
        self._route("GET")

    def do_HEAD(self):
        self._route("HEAD")



def make_handler(repos: Repos, faults: Faults | None = None):
    """A request handler class serving ``repos``; ``main`` and the repo's commit both resolve.

    Its ``cdn`` attribute (set by :func:`serve`) is the base URL large files redirect to.
    """
    return type("Hub", (_Hub,), {"repos": repos, "faults": faults or Faults()})


@contextlib.contextmanager
def serve(repos: Repos, faults: Faults | None = None) -> Iterator[str]:
    """Serve ``repos`` on a free loopback port for the duration of the block; yields the endpoint URL.

    A second loopback server plays the hub's CDN (another origin, so the client treats a redirect
    to it as the real hub's redirect to its storage).
    """
    handler = make_handler(repos, faults)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    cdn = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.cdn = f"http://127.0.0.1:{cdn.server_port}"
    for one in (server, cdn):
        threading.Thread(target=one.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        for one in (server, cdn):
            one.shutdown()
            one.server_close()


def hub_env(endpoint: str, home: Path | str) -> dict[str, str]:
    """Environment that sends huggingface_hub and transformers to ``endpoint``, caching under ``home``."""
    return {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1"}


@contextlib.contextmanager
def pointed_at(endpoint: str) -> Iterator[None]:
    """Send this process's huggingface_hub to ``endpoint`` for the duration (tests calling pipeline.hub
    in-process): it reads HF_ENDPOINT and HF_HUB_OFFLINE once, at import, so :func:`hub_env` only reaches
    subprocesses."""
    from huggingface_hub import constants

    names = ("ENDPOINT", "HUGGINGFACE_CO_URL_TEMPLATE", "HF_HUB_OFFLINE")
    saved = {name: getattr(constants, name) for name in names}
    constants.ENDPOINT = endpoint
    constants.HUGGINGFACE_CO_URL_TEMPLATE = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(constants, name, value)
