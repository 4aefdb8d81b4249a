"""Shared fixtures. Tests that read the real benchmark files are marked ``shared_data`` and
skip when the workplace copy (``<repo>/../shared/data``) is absent."""

from __future__ import annotations

import os
import shutil
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
# (otherwise every process starts a thread per core, and they wait for each other's cores at OpenMP
# barriers; with this and the other test changes of 2026-12-07 the suite's CPU time on 2 cores fell
# from 30 to 14 minutes)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


@pytest.fixture
def shared_data() -> Path:
    """The folder of real benchmark files; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("real benchmark files (../shared/data) not available")
    return SHARED_DATA


def dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``dvc args`` in ``project`` with the project's environment; asserts success unless ``check`` is False."""
    from pipeline.project import project_env

    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=project_env(),
                            capture_output=True, text=True, timeout=1200)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory, worker_id) -> Path:
    """One smoke project (`make smoke` into a temporary folder, about 3 minutes) per test run, shared by the
    test workers: the first worker that asks builds it, the others wait for it. Tests only read it (`dvc
    status` included); a test that changes a project works on its own copy (:func:`private_copy`).
    Returns the project; its published report is ``<project>/../reports``."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = base if worker_id == "master" else base.parent  # the folder all workers of this run share
    root, failed = shared / "smoke-e2e", shared / "smoke-e2e.failed"
    with open(shared / "smoke-e2e.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this worker dies
        if failed.exists():
            pytest.fail(f"the shared smoke project failed to build:\n{failed.read_text(encoding='utf-8')}")
        if not (root / "built").exists():
            env = {**os.environ, "PYTHONHASHSEED": "0"}
            result = subprocess.run([sys.executable, "-m", "pipeline.smoke", "--dir", str(root / "smoke"),
                                     "--reports", str(root / "reports")], cwd=ROOT, env=env, capture_output=True,
                                    text=True, timeout=1200)
            if result.returncode != 0:
                failed.write_text(result.stdout[-4000:] + result.stderr[-4000:], encoding="utf-8")
                pytest.fail(failed.read_text(encoding="utf-8"))
            (root / "built").touch()
    return root / "smoke"


def private_copy(project: Path, target: Path) -> Path:
    """A copy of ``project`` (git repository, DVC cache and outputs) that a test may change."""
    shutil.copytree(project, target, symlinks=True)
    return target


def smoke_benchmarks(folder: Path, pairs: int | None = None) -> dict[str, Path]:
    """The generated KorSTS test and KLUE-STS dev files (``korsts_test.tsv``, ``klue_dev.json`` in ``folder``),
    cut to their first ``pairs`` pairs: tests that encode them with a real pretrained model spend their time
    in the encoder, and 100 pairs test what 300 do."""
    import json
    import tempfile

    from pipeline.smoke_data import write_smoke_sources

    with tempfile.TemporaryDirectory() as scratch:
        written = write_smoke_sources(Path(scratch))
        header, *rows = written["korsts_test"].read_text(encoding="utf-8").splitlines(keepends=True)
        klue = json.loads(written["klue_dev"].read_text(encoding="utf-8"))
    folder.mkdir(parents=True, exist_ok=True)
    out = {"korsts_test": folder / "korsts_test.tsv", "klue_dev": folder / "klue_dev.json"}
    out["korsts_test"].write_text("".join([header, *rows[:pairs]]), encoding="utf-8")
    out["klue_dev"].write_text(json.dumps(klue[:pairs], ensure_ascii=False), encoding="utf-8")
    return out


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


#: Files handed out first, in this order (`make test` gives whole files to its two workers in collection
#: order, ``--no-loadscope-reorder``): the two project builds (the shared smoke project, about 190 s on 2
#: cores; the tiny rehearsal, about 160 s), then test_bench (about 35 s), so that the second worker reaches
#: the tests on copies of the smoke project once it is built rather than waiting for it; then the files of
#: 15-60 s, longest first, so that the many short files (in file order) even out the end.
FIRST = ("test_pipeline_e2e.py", "test_rehearsal.py", "test_bench.py", "test_e2e_experiments.py",
         "test_distributed.py", "test_evaluate.py", "test_card_quirks.py", "test_fake_hub.py", "test_train.py",
         "test_mteb_rows.py", "test_first_run.py", "test_compare.py", "test_runs.py", "test_encoding.py",
         "test_hub_shapes.py")


def pytest_collection_modifyitems(config, items):
    """The files of :data:`FIRST` first; a stable sort keeps each file's own order."""
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))
