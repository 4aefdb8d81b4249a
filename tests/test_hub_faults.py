"""Hub calls that end: pipeline/hub.py against a loopback hub that stalls, redirects, cuts and refuses.

The fake hub (pipeline.fakehub.Faults) counts every request, so each test asserts how many
attempts were made; the client's sleeps are recorded, so the waits are asserted against
:func:`pipeline.hub.retry_waits` (the configured bound), never against the machine's speed.
Timeouts and backoffs are made small through the module constants.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from pathlib import Path

import pytest

from pipeline import fakehub, hub
from pipeline.errors import UserError
from pipeline.tiny import build_tiny_model

REPO = "fault-org/tiny"
COMMIT = "fa" * 20
TIMEOUT = 0.3     # seconds a request may stall here
STALL = 1.5       # how long a stalled answer takes: well past TIMEOUT
BACKOFF = 0.01
CHUNK = 4096      # huggingface_hub's write size here: a transfer resumes from the last whole chunk written


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, bytes]:
    """A tiny BERT repository; model.safetensors is its largest file (the one redirected)."""
    root = tmp_path_factory.mktemp("faults")
    corpus = root / "corpus.txt"
    lines = [f"{i}년 서울에서는 비가 내렸다." for i in range(1900, 2000)]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = build_tiny_model(corpus, root / "model", vocab_size=200, hidden=32, layers=1, heads=2,
                             intermediate=64, max_positions=64)
    files = fakehub.folder_files(model)
    assert max(files, key=lambda name: len(files[name])) == "model.safetensors"
    return files


@pytest.fixture
def client(tmp_path, monkeypatch):
    """huggingface_hub pointed at a fresh cache; small timeout and backoff; the client's sleeps recorded."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(hub, "HUB_TIMEOUT_S", TIMEOUT)
    monkeypatch.setattr(hub, "HUB_BACKOFF_S", BACKOFF)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    # huggingface_hub writes a download in chunks of 10 MB; a cut tiny file must leave bytes behind
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
    sleeps: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:  # every time.sleep in the process: ours and huggingface_hub's
        sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return sleeps


@contextlib.contextmanager
def _serve(files, faults):
    """The loopback hub for ``files`` with ``faults``, this process's huggingface_hub pointed at it."""
    with fakehub.serve({REPO: (COMMIT, files)}, faults) as url, fakehub.pointed_at(url):
        yield


@pytest.fixture
def hub_log():
    """The messages huggingface_hub logs at WARNING or above during the test (its logger writes to stderr)."""
    import logging

    messages: list[str] = []

    class Record(logging.Handler):
        def emit(self, record):
            if record.levelno >= logging.WARNING:
                messages.append(record.getMessage())

    handler = Record(level=logging.DEBUG)
    logging.getLogger("huggingface_hub").addHandler(handler)
    yield messages
    logging.getLogger("huggingface_hub").removeHandler(handler)


def test_retry_waits_bound():
    assert hub.retry_waits(4, 2.0) == [2.0, 4.0, 8.0, 16.0]  # the defaults: 30 s of waiting at most
    assert sum(hub.retry_waits(hub.HUB_RETRIES, hub.HUB_BACKOFF_S)) == hub.HUB_MAX_WAIT_S == 30.0
    dead_hub = (hub.HUB_RETRIES + 1) * hub.HUB_REQUESTS_PER_ATTEMPT * hub.HUB_TIMEOUT_S + hub.HUB_MAX_WAIT_S
    assert dead_hub == 180.0  # the bound the constants' comment states
    assert hub.retry_waits(0, 2.0) == []


def test_stalled_model_info_times_out_and_is_retried_once(files, client, monkeypatch, capsys):
    faults = fakehub.Faults(stall={f"GET api {REPO}": 1}, stall_s=STALL)
    with _serve(files, faults):
        commit, listing = hub.repo_listing(REPO, "main")
    assert commit == COMMIT and sorted(listing) == sorted(files)
    assert faults.seen[f"GET api {REPO}"] == 2  # the stalled one, cut by the timeout, and one retry
    assert client == [BACKOFF]
    assert capsys.readouterr().out == (f"warning: {REPO}@main: ReadTimeout: timed out; retrying in {BACKOFF:g}s "
                                       "(1/4)\n")


def test_a_hub_that_always_stalls_ends_in_one_line_within_the_bound(files, client, monkeypatch, capfd):
    faults = fakehub.Faults(stall={f"GET api {REPO}": 99}, stall_s=STALL)
    with _serve(files, faults):
        with pytest.raises(UserError) as info:
            hub.repo_listing(REPO, "main", retries=2)
    assert str(info.value) == (f"{REPO}@main: cannot reach the Hugging Face hub after 3 attempts (ReadTimeout: "
                               "timed out); check the network or proxy, retry later, or pass a local folder")
    assert faults.seen[f"GET api {REPO}"] == 3
    assert client == hub.retry_waits(2, BACKOFF) == [BACKOFF, 2 * BACKOFF]  # no other sleep: one retry layer
    out, err = capfd.readouterr()
    assert err == ""  # huggingface_hub's own retry warnings are silenced during our calls
    assert len(out.splitlines()) == 2 and all(line.startswith(f"warning: {REPO}@main: ") for line in out.splitlines())


def test_redirected_large_file_survives_a_stall_and_a_cut(files, client, monkeypatch, tmp_path, capfd, hub_log):
    """model.safetensors comes through a 302 to the "CDN"; its first GET stalls, its second is cut halfway.

    The stall is one attempt of our retry layer (a new HEAD + GET, after our one wait), not one of
    hf_hub_download's own retries; the cut transfer resumes where it broke (HTTP Range), after
    huggingface_hub's 1 s pause (only ever after bytes arrived: never a wait on a dead hub).
    """
    cdn_get = "GET cdn model.safetensors"
    weights = files["model.safetensors"]
    faults = fakehub.Faults(redirect_from=len(weights), stall={cdn_get: 1}, cut={cdn_get: 1}, stall_s=STALL)
    with _serve(files, faults):
        record = hub.fetch_model(REPO, COMMIT, tmp_path / "out")
    assert record["commit"] == COMMIT
    assert record["files"]["model.safetensors"] == hashlib.sha256(weights).hexdigest()
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == weights
    assert faults.seen["HEAD resolve model.safetensors"] == 2
    assert faults.seen[cdn_get] == 3 and faults.seen["GET resolve model.safetensors"] == 0  # only via the redirect
    assert faults.seen["GET resolve config.json"] == 1 and faults.seen["GET cdn config.json"] == 0  # small: direct
    half = len(weights) // 2
    assert faults.ranges == [(cdn_get, half - half % CHUNK)]  # the cut download resumed where it broke
    assert client == [BACKOFF, 1]
    out, err = capfd.readouterr()
    assert out.splitlines() == [f"warning: {REPO}@{COMMIT} model.safetensors: ReadTimeout: timed out; "
                                f"retrying in {BACKOFF:g}s (1/4)"]
    assert err == "" and hub_log == []  # huggingface_hub's own warnings ("Trying to resume") are silenced


def test_a_stalled_head_is_not_retried_inside_hf_hub_download(files, client, monkeypatch, tmp_path):
    """hf_hub_download follows a failed HEAD with a second one of its own (60 s timeout, five retries);
    here that second HEAD is one plain request with our timeout, and the attempt fails into our retry."""
    head = "HEAD resolve config.json"
    faults = fakehub.Faults(stall={head: 2}, stall_s=STALL)
    with _serve(files, faults):
        config = hub.read_hub_config(REPO, COMMIT)
    assert config["model_type"] == "bert"
    assert faults.seen[head] == 3 and faults.seen["GET resolve config.json"] == 1  # 2 stalled in attempt 1, then 1
    assert client == [BACKOFF]


def test_401_names_the_token_and_is_not_retried(files, client, monkeypatch):
    faults = fakehub.Faults(unauthorized=frozenset({REPO}))
    with _serve(files, faults):
        with pytest.raises(UserError) as info:
            hub.repo_listing(REPO, "main")
    assert str(info.value) == (f"{REPO}@main: the hub refused access (HTTP 401); set HF_TOKEN or run "
                               "`hf auth login` with a token that can read it")
    assert faults.seen[f"GET api {REPO}"] == 1 and client == []


def test_a_full_disk_is_not_retried(client):
    import errno

    def download():
        raise OSError(errno.ENOSPC, "No space left on device", "/cache/blobs/abc.incomplete")

    with pytest.raises(UserError) as info:
        hub._hub_call(download, f"{REPO}@main model.safetensors")
    assert str(info.value) == (f"{REPO}@main model.safetensors: cannot write the download (No space left on device: "
                               "/cache/blobs/abc.incomplete); free disk space, or set HF_HOME to a writable disk "
                               "with room")
    assert client == []


def _fake_xet(weights: bytes, failures: list[BaseException], calls: list[str]):
    """A stand-in for huggingface_hub's ``xet_get`` (no Xet storage offline): raise ``failures`` in turn,
    then write ``weights`` where hf_hub_download expects the transfer's bytes."""

    def xet_get(*, incomplete_path: Path, xet_file_data, headers, expected_size, **_):
        calls.append(xet_file_data.file_hash)
        if failures:
            raise failures.pop(0)
        assert expected_size == len(weights)
        incomplete_path.write_bytes(weights)

    return xet_get


def test_xet_transfer_errors_are_retried(files, client, monkeypatch, tmp_path):
    """hf_xet raises plain RuntimeError / ConnectionError from Rust; each is one retried attempt."""
    import huggingface_hub.file_download as file_download

    weights = files["model.safetensors"]
    calls: list[str] = []
    failures = [RuntimeError("Data processing error: CAS service error"), ConnectionError("reset by peer")]
    monkeypatch.setattr(file_download, "xet_get", _fake_xet(weights, failures, calls))
    monkeypatch.setattr(file_download, "is_xet_available", lambda: True)
    faults = fakehub.Faults(redirect_from=len(files["model.safetensors"]), xet=True)
    with _serve(files, faults):
        record = hub.fetch_model(REPO, COMMIT, tmp_path / "out")
    assert calls == [hashlib.sha256(weights).hexdigest()] * 3
    assert record["files"]["model.safetensors"] == hashlib.sha256(weights).hexdigest()
    assert faults.seen["GET cdn model.safetensors"] == 0  # the transfer went through xet_get, not HTTP
    assert client == [BACKOFF, 2 * BACKOFF]


def test_xet_authentication_error_names_the_token(files, client, monkeypatch, tmp_path):
    import hf_xet
    import huggingface_hub.file_download as file_download

    calls: list[str] = []
    failures = [hf_xet.XetAuthenticationError("token refresh failed")]
    monkeypatch.setattr(file_download, "xet_get", _fake_xet(files["model.safetensors"], failures, calls))
    monkeypatch.setattr(file_download, "is_xet_available", lambda: True)
    with _serve(files, fakehub.Faults(redirect_from=len(files["model.safetensors"]), xet=True)):
        with pytest.raises(UserError) as info:
            hub.fetch_model(REPO, COMMIT, tmp_path / "out")
    assert str(info.value) == (f"{REPO}@{COMMIT} model.safetensors: the hub refused access (HTTP 401); set HF_TOKEN "
                               "or run `hf auth login` with a token that can read it")
    assert len(calls) == 1 and client == []


def test_hub_internals_are_restored_after_a_call(files, client, monkeypatch):
    import huggingface_hub.constants as constants
    import huggingface_hub.file_download as file_download

    before = (file_download.get_hf_file_metadata, file_download.http_get, file_download.xet_get,
              constants.HF_HUB_DOWNLOAD_TIMEOUT)
    with _serve(files, fakehub.Faults(unauthorized=frozenset({REPO}))):
        with pytest.raises(UserError):
            hub.read_hub_config(REPO, COMMIT)
    assert (file_download.get_hf_file_metadata, file_download.http_get, file_download.xet_get,
            constants.HF_HUB_DOWNLOAD_TIMEOUT) == before
