"""Atomic writes: a killed process leaves the previous output or none, never half a file.

Every file and folder a stage writes goes through here: write to a temporary
sibling, then ``os.replace`` into place (atomic on POSIX within a filesystem).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process umask once: temp files are created 0600, published ones follow it


def write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: Path | str, text: str) -> None:
    """Write UTF-8 ``text`` atomically, with '\\n' line endings on every platform."""
    write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """The project's one JSON style: sorted keys, 2-space indent, UTF-8, final newline.

    Sorted keys and a fixed float repr make the bytes a function of the values,
    so two identical runs give byte-identical files.
    """
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as JSON (see :func:`dumps_json`) atomically."""
    write_text(path, dumps_json(obj))


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Build a folder under a temporary name; move it to ``path`` only on success.

    Yields the temporary folder to fill. On an exception the temporary folder is
    removed and any existing ``path`` is left untouched; on success the old
    ``path`` (if any) is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp's 0700 would leak into the published folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
