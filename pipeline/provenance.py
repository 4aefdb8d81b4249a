"""Where a number came from: code version, hardware and library versions, wall times."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path


def code_version(root: Path | str = ".") -> dict:
    """Git commit of ``root`` and whether its tree differs from it.

    Files the pipeline itself rewrites (generated reports, dvc.lock, the
    .gitignore entries DVC adds) are excluded from the dirty check: running the
    pipeline must not make its own report claim a dirty tree.
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)reports",
                     ":(exclude)dvc.lock", ":(exclude,glob)**/.gitignore")
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status)}


def describe_code(code: dict) -> str:
    """One phrase for a :func:`code_version` result: "commit `abc123def456`[ with uncommitted changes]"."""
    if not code.get("commit"):
        return "unknown commit (not a git checkout)"
    return f"commit `{code['commit'][:12]}`" + (" with uncommitted changes" if code.get("dirty") else "")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def environment() -> dict:
    """Hardware and library versions of this process (stable on one machine)."""
    import torch

    cpu = cpu_model()
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except ImportError:
        pass
    return env


class Timer:
    """Wall-clock seconds of a block: ``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def write_timing(path: Path | str | None, stage: str, seconds: float, **extra) -> None:
    """Record a stage's wall time (kept apart from metrics and models, which must be reproducible)."""
    if path is None:
        return
    from pipeline.atomic import write_json

    write_json(path, {"stage": stage, "wall_seconds": round(seconds, 2), **extra})
