"""YAML read and written the way DVC 3.67.1 does, so that params.yaml means one thing everywhere.

DVC reads a params file (a stage's params deps, ``${...}`` templating, ``dvc exp show``,
dvc.lock) with ``dvc.utils.serialize.parse_yaml``: ruamel.yaml's ``YAML(typ="safe")``, that
is YAML 1.2, where ``yes`` and ``on`` are strings, ``0o17`` is 15 and ``6e-05`` a float
(PyYAML, YAML 1.1, reads True, True, '0o17' and '6e-05'). ``dvc exp run -S`` edits
params.yaml by round trip (``dvc.utils.serialize.modify_yaml``): ``YAML(typ="rt")`` loads
nodes that remember comments, key order and flow style, the values are set on them, and
``YAML()`` with ``default_flow_style = False`` dumps the file again. The three functions
below are exactly those settings: stages, ``simcse-ko pin`` and the generated smoke and
rehearsal params read and write through them, and tests/test_yamlio.py checks them
against DVC's own functions.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

__all__ = ["MarkedYAMLError", "YAMLError", "dump", "load", "load_for_update"]


def load(text: str) -> Any:
    """``text`` as plain Python data (dict, list, str, int, float, bool, None, date), as DVC reads it.

    Raises:
        YAMLError: not YAML (a :class:`MarkedYAMLError` carries ``problem`` and ``problem_mark.line``),
            or a mapping with a duplicate key.
    """
    return YAML(typ="safe").load(text)


def load_for_update(text: str) -> Any:
    """``text`` as ruamel.yaml round-trip nodes (CommentedMap, CommentedSeq, scalars) to edit and :func:`dump`."""
    return YAML(typ="rt").load(text)


def dump(data: Any) -> str:
    """``data`` (plain data or :func:`load_for_update` nodes) as DVC writes YAML: block style, mapping
    order kept, null as an empty value, plain scalars wrapped past 80 columns."""
    yaml = YAML()
    yaml.default_flow_style = False
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()
