"""Shared fixtures. Tests that read the real benchmark files are marked ``shared_data`` and
skip when the workplace copy (``<repo>/../shared/data``) is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `make test` runs two workers: each one, and every process it starts, gets its share of the cores
# (otherwise every process starts a thread per core and they spin at OpenMP barriers, measured as about
# a fifth more CPU time for the suite on 2 cores)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture
def shared_data() -> Path:
    """The folder of real benchmark files; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("real benchmark files (../shared/data) not available")
    return SHARED_DATA


def run_module(module: str, *args: str, cwd: Path, env: dict | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` in ``cwd`` (a project folder) and capture its output."""
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def run_nodes(commands: list[list[str]], *, cwd: Path | None = None, env: dict | None = None,
              timeout: float = 240) -> tuple[list[int | None], list[str]]:
    """Start ``commands`` together (the "machines" of a multi-node launch) and wait for all of them.

    A launch that hangs (a rank that died can leave the others waiting in a collective) is killed
    whole once ``timeout`` seconds have passed since the start, torchrun's workers included (they
    run in sessions of their own, so a process group would miss them).

    Returns:
        (exit codes, None for a killed launch; each launch's stdout and stderr)
    """
    import time

    full_env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", **(env or {})}
    procs = [subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for cmd in commands]
    deadline = time.monotonic() + timeout
    codes: list[int | None] = []
    logs: list[str] = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            codes.append(proc.returncode)
        except subprocess.TimeoutExpired:
            out = ""
            codes.append(None)
        logs.append(out)
    for i, proc in enumerate(procs):
        if codes[i] is None:
            _kill_tree(proc.pid)
            logs[i] = proc.communicate()[0]
    return codes, logs


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process descended from it (Linux: parents read from /proc)."""
    import signal

    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    for member in reversed(tree):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def parse_tables(markdown: str) -> dict[str, list[list[str]]]:
    """{section title: rows of cells} for the first table under each `## ` heading."""
    tables: dict[str, list[list[str]]] = {}
    section = None
    for line in markdown.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        elif line.startswith("|") and section and not set(line) <= set("|-: "):
            tables.setdefault(section, []).append([c.strip() for c in line.strip("|").split("|")])
    return tables



def headline_rows(markdown: str) -> list[list[str]]:
    """Rows (header first) of the report's headline: the first table, above any `<details>` or `## `."""
    opening = markdown.split("\n## ")[0].split("<details>")[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in opening.splitlines()
            if line.startswith("|") and not set(line) <= set("|-: ")]


def pytest_collection_modifyitems(config, items):
    """Files holding end-to-end runs (tests marked ``slow``) first, most such tests first. `make test` hands
    whole files to its two workers in collection order (``--no-loadscope-reorder``): the longest files then
    start at once instead of after the many short ones, which would leave one worker idle at the end."""
    from collections import Counter

    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])  # a stable sort keeps each file's own order
