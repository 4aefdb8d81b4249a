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
