"""One clear line for errors a user can act on; tracebacks stay for bugs."""

from __future__ import annotations

import functools
import sys
from typing import Callable


class UserError(Exception):
    """An error caused by input the user controls (a file, a URL, a param).

    The message is one line: what went wrong, where (file and line, record, URL
    or param), and what is expected.
    """


def cli_entry(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a stage's ``main`` so a :class:`UserError` exits 2 with one line, no traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return wrapper
