"""pipeline/download.py against a local path, a file:// URL and a loopback HTTP server that fails
in the ways real downloads fail (404, 5xx, a body cut short)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections import Counter
from pathlib import Path

import pytest

from pipeline.download import fetch, resolve_source, sha256_file
from pipeline.errors import UserError

# Bytes that are not all one value, so a truncated or shifted copy cannot hash the same.
BODY = ("가나다라마바사\t아자차카타파하\n" * 5000).encode("utf-8") + bytes(range(256))
BODY_SHA = hashlib.sha256(BODY).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: Counter = Counter()  # path -> requests so far (reset per test)

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _send(self, code: int, body: bytes, length: int | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _drop(self) -> None:
        """Promise the whole file, send half of it, close the connection."""
        self._send(200, BODY[: len(BODY) // 2], length=len(BODY))
        self.wfile.flush()
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        self.hits[self.path] += 1
        first = self.hits[self.path] == 1
        if self.path == "/data/file.tsv":
            self._send(200, BODY)
        elif self.path == "/flaky-500/file.tsv":
            if first:
                self._send(500, b"busy")
            else:
                self._send(200, BODY)
        elif self.path == "/drop-once/file.tsv":
            if first:
                self._drop()
            else:
                self._send(200, BODY)
        elif self.path == "/drop-always/file.tsv":
            self._drop()
        else:
            self._send(404, b"not found")


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _reset_hits():
    _Handler.hits.clear()


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fetch_local_path(tmp_path):
    src = tmp_path / "src" / "file.tsv"
    src.parent.mkdir()
    src.write_bytes(BODY)
    got = fetch(str(src), tmp_path / "out" / "file.tsv", sha256=BODY_SHA, progress=False)
    assert (tmp_path / "out" / "file.tsv").read_bytes() == BODY
    assert (got.sha256, got.bytes, got.pinned, got.source) == (BODY_SHA, len(BODY), True, str(src))
    assert _left(tmp_path / "out") == ["file.tsv"]


def test_fetch_file_url_records_unpinned_hash(tmp_path):
    src = tmp_path / "a folder" / "file.tsv"  # a space: the URL is percent-encoded
    src.parent.mkdir()
    src.write_bytes(BODY)
    got = fetch(src.as_uri(), tmp_path / "out" / "file.tsv", progress=False)
    assert "%20" in src.as_uri()
    assert (tmp_path / "out" / "file.tsv").read_bytes() == BODY
    assert (got.sha256, got.bytes, got.pinned) == (BODY_SHA, len(BODY), False)


@pytest.mark.parametrize("url", ["missing.tsv", "file:///nonexistent/missing.tsv"])
def test_fetch_missing_local_source(tmp_path, url):
    if "://" not in url:
        url = str(tmp_path / url)
    with pytest.raises(UserError) as info:
        fetch(url, tmp_path / "out" / "file.tsv", progress=False)
    assert str(info.value) == f"{url}: source file not found"
    assert _left(tmp_path / "out") == []


def test_fetch_http_ok(tmp_path, server):
    url = f"{server}/data/file.tsv"
    got = fetch(url, tmp_path / "file.tsv", sha256=BODY_SHA.upper(), backoff=0.01, progress=False)
    assert (tmp_path / "file.tsv").read_bytes() == BODY
    assert (got.sha256, got.bytes, got.pinned, got.source) == (BODY_SHA, len(BODY), True, url)
    assert _Handler.hits[url.removeprefix(server)] == 1
    assert _left(tmp_path) == ["file.tsv"]


def test_fetch_http_404(tmp_path, server):
    url = f"{server}/nothing/here.tsv"
    with pytest.raises(UserError) as info:
        fetch(url, tmp_path / "out" / "here.tsv", backoff=0.01, progress=False)
    message = str(info.value)
    assert url in message and "404" in message
    assert "\n" not in message
    assert _Handler.hits["/nothing/here.tsv"] == 1  # a 404 is not retried
    assert _left(tmp_path / "out") == []  # no file, no *.part


def test_fetch_http_500_then_ok(tmp_path, server, capsys):
    url = f"{server}/flaky-500/file.tsv"
    got = fetch(url, tmp_path / "file.tsv", sha256=BODY_SHA, backoff=0.01, progress=False)
    assert (tmp_path / "file.tsv").read_bytes() == BODY
    assert got.sha256 == BODY_SHA
    assert _Handler.hits["/flaky-500/file.tsv"] == 2
    assert "HTTP 500; retrying" in capsys.readouterr().out
    assert _left(tmp_path) == ["file.tsv"]


def test_fetch_http_body_cut_short_then_ok(tmp_path, server):
    url = f"{server}/drop-once/file.tsv"
    got = fetch(url, tmp_path / "file.tsv", sha256=BODY_SHA, backoff=0.01, progress=False)
    # the half-file from the first attempt is discarded, not prepended
    assert (tmp_path / "file.tsv").read_bytes() == BODY
    assert (got.sha256, got.bytes) == (BODY_SHA, len(BODY))
    assert _Handler.hits["/drop-once/file.tsv"] == 2
    assert _left(tmp_path) == ["file.tsv"]


def test_fetch_http_body_cut_short_every_time(tmp_path, server):
    url = f"{server}/drop-always/file.tsv"
    with pytest.raises(UserError) as info:
        fetch(url, tmp_path / "out" / "file.tsv", retries=3, backoff=0.01, progress=False)
    message = str(info.value)
    assert message.startswith(f"{url}: download failed after 4 attempts")
    assert "IncompleteRead" in message
    assert "\n" not in message
    assert _Handler.hits["/drop-always/file.tsv"] == 4
    assert _left(tmp_path / "out") == []


@pytest.mark.parametrize("source", ["http", "local"])
def test_fetch_sha256_mismatch(tmp_path, server, source):
    if source == "http":
        url = f"{server}/data/file.tsv"
    else:
        url = str(tmp_path / "file.src")
        Path(url).write_bytes(BODY)
    wrong = "0" * 64
    dest = tmp_path / "out" / "file.tsv"
    with pytest.raises(UserError) as info:
        fetch(url, dest, sha256=wrong, backoff=0.01, progress=False)
    assert str(info.value) == f"{url}: sha256 mismatch: expected {wrong}, got {BODY_SHA}; file not kept"
    assert not dest.exists()
    assert _left(tmp_path / "out") == []


def test_fetch_replaces_an_existing_file(tmp_path):
    src = tmp_path / "src.tsv"
    src.write_bytes(BODY)
    dest = tmp_path / "out" / "file.tsv"
    dest.parent.mkdir()
    dest.write_bytes(b"old contents that are longer than nothing" * 10_000)
    fetch(str(src), dest, progress=False)
    assert dest.read_bytes() == BODY
    assert sha256_file(dest) == BODY_SHA


@pytest.mark.parametrize("url, revision, expected", [
    ("https://host/repo/{revision}/KorSTS/sts-test.tsv", "0df0fe7", "https://host/repo/0df0fe7/KorSTS/sts-test.tsv"),
    ("https://host/releases/download/{revision}/wiki.txt", "v1.0.0", "https://host/releases/download/v1.0.0/wiki.txt"),
    ("https://host/fixed/file.tsv", "v1", "https://host/fixed/file.tsv"),
    ("file:///data/{revision}/x.tsv", "r2", "file:///data/r2/x.tsv"),
    ("/abs/{revision}/x.tsv", "r3", "/abs/r3/x.tsv"),
])
def test_resolve_source_fills_revision(url, revision, expected):
    assert resolve_source(url, revision) == expected


def test_resolve_source_relative_path_and_missing_revision(tmp_path):
    assert resolve_source("src/{revision}/x.tsv", "v1", base=tmp_path) == str(tmp_path / "src" / "v1" / "x.tsv")
    with pytest.raises(UserError, match=r"has a \{revision\} placeholder but no revision is set"):
        resolve_source("https://host/{revision}/x.tsv", None)


def test_fetch_shows_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path, server, capsys):
    """A bar in a piped stderr would bury the stage's one-line error (see tests/test_bad_input.py)."""
    src = tmp_path / "src.tsv"
    src.write_bytes(BODY)
    fetch(str(src), tmp_path / "a.tsv")  # progress=True, the stage's default
    fetch(f"{server}/data/file.tsv", tmp_path / "b.tsv")
    assert capsys.readouterr().err == ""
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes() == BODY
