"""A loopback HTTP server that speaks the part of the Hugging Face hub API the pipeline uses.

``huggingface_hub`` (``model_info`` with file metadata, ``hf_hub_download``) talks to
``HF_ENDPOINT``; pointed at this server it reads model repositories from memory, so the
real download path (revision resolution, commit recording, file fetches, our retry and
error mapping) runs offline. The smoke run serves its comparison models from here, and
the tests serve tiny models, unknown ids and revisions and repos without a tokenizer.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
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


def make_handler(repos: Repos):
    """A request handler class serving ``repos``; ``main`` and the repo's commit both resolve."""

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the caller's output clean
            pass

        def _error(self, code: str) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _repo(self, repo: str, rev: str):
            if repo not in repos:
                return self._error("RepoNotFound")
            commit, served = repos[repo]
            if rev not in ("main", commit):
                return self._error("RevisionNotFound")
            return commit, served

        def _route(self, head: bool) -> None:
            parts = urllib.parse.urlparse(self.path).path.strip("/").split("/")
            if parts[:2] == ["api", "models"]:  # /api/models/<org>/<name>[/revision/<rev>]
                found = self._repo("/".join(parts[2:4]), parts[5] if len(parts) > 5 else "main")
                if found is None:
                    return
                commit, served = found
                body = json.dumps({"id": "/".join(parts[2:4]), "modelId": "/".join(parts[2:4]), "sha": commit,
                                   "private": False,
                                   "siblings": [{"rfilename": name} for name in sorted(served)]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
            elif len(parts) >= 5 and parts[2] == "resolve":  # /<org>/<name>/resolve/<rev>/<path>
                found = self._repo("/".join(parts[:2]), parts[3])
                if found is None:
                    return
                commit, served = found
                name = "/".join(parts[4:])
                if name not in served:
                    return self._error("EntryNotFound")
                body = served[name]
                self.send_response(200)
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", '"' + hashlib.sha256(body).hexdigest() + '"')
            else:
                return self._error("RepoNotFound")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_GET(self):
            self._route(head=False)

        def do_HEAD(self):
            self._route(head=True)

    return Hub


@contextlib.contextmanager
def serve(repos: Repos) -> Iterator[str]:
    """Serve ``repos`` on a free loopback port for the duration of the block; yields the endpoint URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(repos))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def hub_env(endpoint: str, home: Path | str) -> dict[str, str]:
    """Environment that sends huggingface_hub and transformers to ``endpoint``, caching under ``home``."""
    return {"HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1"}
