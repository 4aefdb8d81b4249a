"""`simcse-ko pin`: write what a run recorded back into params.yaml, so every later run is exact.

After a first real run, data/raw/manifest.json holds the sha256 of every
downloaded source, the data/models manifests the commit each base model's
revision resolved to, and eval/published and eval/compare the commits of the
hub checkpoints evaluated. ``pin`` copies those into params.yaml: a null
``sources.<key>.sha256`` gets the recorded hash, a branch name in
``model_revisions``, ``published.checkpoints.<name>.revision`` or
``compare[i].revision`` the recorded commit (a hub model or compared encoder
without a revision gets one). A pinned value that disagrees with the record is an error, never
overwritten. Only those values change: comments, order and spacing of
params.yaml stay byte for byte, which is why the file is edited line by line
(and the result is checked with a YAML parser before it is written).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import UserError
from pipeline.hub import is_commit
from pipeline.sources import source_url


@dataclass(frozen=True)
class Pin:
    """One value to write: its path of keys in params.yaml, the value there now, the recorded one."""

    path: tuple[str | int, ...]
    old: Any
    new: str

    def describe(self) -> str:
        old = "null" if self.old is None else "(absent)" if self.old is _ABSENT else self.old
        return f"{dotted(self.path)}: {old} -> {self.new}"


_ABSENT = "(absent)"


def dotted(path: tuple[str | int, ...]) -> str:
    """A params path as messages name it: ``model_revisions.klue/bert-base``, ``compare[2].revision``."""
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else f".{key}" if out else key
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read the run's manifest ({type(exc).__name__}); "
                        "rerun the stage that writes it") from None


def recorded_commits(models_dir: Path) -> dict[str, dict]:
    """{hub id: record} from every manifest under ``models_dir``, in either layout:
    ``data/models/manifest.json`` = {slug: record}, or ``data/models/<variant>/manifest.json`` = record."""
    out: dict[str, dict] = {}
    for path in sorted(models_dir.glob("**/manifest.json")):
        data = _read_json(path)
        records = [data] if isinstance(data, dict) and "model" in data else \
            [r for r in (data.values() if isinstance(data, dict) else []) if isinstance(r, dict) and "model" in r]
        for record in records:
            if record.get("kind") != "hub" or not record.get("commit"):
                continue  # a local folder has no commit to pin
            seen = out.get(record["model"])
            if seen is not None and seen["commit"] != record["commit"]:
                raise UserError(f"{path}: {record['model']} recorded at commit {record['commit']} here but "
                                f"{seen['commit']} in another manifest; rerun `dvc repro fetch_model` first")
            out[record["model"]] = record
    return out


def recorded_evaluations(root: Path) -> dict[str, dict[str, dict]]:
    """The hub checkpoints the published and compare stages evaluated:
    {"published": {name: record}, "compare": {hub id: record}} (empty where a stage has not run)."""
    out: dict[str, dict[str, dict]] = {"published": {}, "compare": {}}
    for stage, key in (("published", "checkpoints"), ("compare", "models")):
        path = root / "eval" / stage / "manifest.json"
        if path.is_file():
            records = _read_json(path).get(key) or {}
            out[stage] = {name: r for name, r in records.items() if isinstance(r, dict) and r.get("commit")}
    return out


def _revision_pin(path: tuple[str | int, ...], current: Any, record: dict, stage: str,
                  pins: list[Pin], problems: list[str]) -> None:
    """Pin ``path`` to the commit ``record`` resolved, unless params already name another one."""
    if current == record["commit"]:
        return
    if is_commit(current):
        problems.append(f"{dotted(path)}: pinned {current} but the run recorded {record['commit']}; "
                        f"rerun `dvc repro {stage}`")
    elif current not in (_ABSENT, None, "") and current != record.get("revision"):
        problems.append(f"{dotted(path)}: {current} now, but the run resolved {record.get('revision')}; "
                        f"rerun `dvc repro {stage}`")
    else:
        pins.append(Pin(path, current, record["commit"]))


def plan_pins(params: dict, raw_files: dict[str, dict], models: dict[str, dict],
              evaluated: dict[str, dict[str, dict]] | None = None) -> tuple[list[Pin], list[str]]:
    """(the values to write, the disagreements between params.yaml and the records).

    Args:
        params: params.yaml as parsed.
        raw_files: ``files`` of data/raw/manifest.json (source key -> record with sha256, source, revision).
        models: :func:`recorded_commits`.
        evaluated: :func:`recorded_evaluations` (None: none).
    """
    pins: list[Pin] = []
    problems: list[str] = []
    roots = params.get("source_roots") or {}
    for key, entry in (params.get("sources") or {}).items():
        record = raw_files.get(key)
        if record is None:
            continue
        # as the download stage records it: source_roots filled in, then the revision
        source = source_url(key, entry["url"], roots).replace("{revision}", entry.get("revision") or "")
        if record.get("source") != source or record.get("revision") != entry.get("revision"):
            problems.append(f"sources.{key}: data/raw/manifest.json records {record.get('source')} at revision "
                            f"{record.get('revision')}, params.yaml now names {source}; rerun `dvc repro download`")
        elif entry.get("sha256") is None:
            pins.append(Pin(("sources", key, "sha256"), None, record["sha256"]))
        elif entry["sha256"].lower() != record["sha256"]:
            problems.append(f"sources.{key}.sha256: pinned {entry['sha256']} but the run recorded "
                            f"{record['sha256']}; check which is right before changing it")
    revisions = params.get("model_revisions") or {}
    for model, record in models.items():
        _revision_pin(("model_revisions", model), revisions.get(model, _ABSENT), record, "fetch_model",
                      pins, problems)
    evaluated = evaluated or {}
    checkpoints = (params.get("published") or {}).get("checkpoints") or {}
    for name, entry in checkpoints.items():
        record = evaluated.get("published", {}).get(name)
        if isinstance(entry, dict) and record is not None and record.get("model") == entry.get("id"):
            _revision_pin(("published", "checkpoints", name, "revision"), entry.get("revision", _ABSENT),
                          record, "published", pins, problems)
    for i, entry in enumerate(params.get("compare") or []):
        record = evaluated.get("compare", {}).get(entry.get("id")) if isinstance(entry, dict) else None
        if record is not None:
            _revision_pin(("compare", i, "revision"), entry.get("revision", _ABSENT), record, "compare",
                          pins, problems)
    return pins, problems


# --- line-based YAML editing --------------------------------------------------------

_KEY = re.compile(r"""^(?P<indent> *)(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<plain>[^\s#'"{\[][^#]*?))\s*:(?=\s|$)""")


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar that reads back as the same string (quoted only if it must be)."""
    return value if yaml.safe_load(value) == value else json.dumps(value)


def _content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _dash(line: str) -> bool:
    """A block sequence item (``- x`` or a lone ``-``)."""
    rest = line.lstrip(" ")
    return rest.startswith("- ") or rest.rstrip("\n") == "-"


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Index after the last content line of the block that follows ``start``: deeper than ``indent``,
    or a block sequence at ``indent`` itself (YAML lets ``key:`` take ``- item`` lines at its own indent)."""
    end = start + 1
    for i in range(start + 1, len(lines)):
        if _content(lines[i]):
            if _indent(lines[i]) < indent or (_indent(lines[i]) == indent and not _dash(lines[i])):
                break
            end = i + 1
    return end


def _find_item(lines: list[str], index: int, start: int, stop: int) -> tuple[int, int] | None:
    """(first line, index after the last content line) of item ``index`` of the block sequence in
    ``lines[start:stop]``, or None."""
    content = [i for i in range(start, stop) if _content(lines[i])]
    if not content or not _dash(lines[content[0]]):
        return None
    items = [i for i in content if _dash(lines[i]) and _indent(lines[i]) == _indent(lines[content[0]])]
    if index >= len(items):
        return None
    first = items[index]
    end = first + 1
    for i in range(first + 1, items[index + 1] if index + 1 < len(items) else stop):
        if _content(lines[i]):
            end = i + 1
    return first, end


def _find_key(lines: list[str], key: str, start: int, stop: int, indent: int | None) -> tuple[int | None, int | None]:
    """(line index of ``key:`` or None, the children's indent) among the direct children of a block
    (at ``indent``, or else at the indent of its first content line)."""
    for i in range(start, stop):
        if not _content(lines[i]):
            continue
        if indent is None:
            indent = _indent(lines[i])
        match = _KEY.match(lines[i])
        if match and len(match["indent"]) == indent and key in (match["dq"], match["sq"], match["plain"]):
            return i, indent
    return None, indent


def _value_span(line: str, after: int) -> tuple[int, int]:
    """Start and end of the scalar value after the key's colon (before a `# comment`)."""
    start = after + 1
    while start < len(line) and line[start] == " ":
        start += 1
    comment = re.search(r"\s#", line[start:])
    value = line[start:start + comment.start()] if comment else line[start:]
    return start, start + len(value.rstrip())


def _set_in_flow(line: str, brace: int, key: str, value: str) -> str:
    """Set ``key`` in the one-line flow mapping that opens at ``brace`` (replace it, or append it)."""
    close = line.index("}", brace)
    inner = line[brace + 1:close]
    match = re.search(rf"(^|,)(\s*){re.escape(key)}\s*:\s*([^,]*?)\s*(?=,|$)", inner)
    if match:
        start, end = brace + 1 + match.start(3), brace + 1 + match.end(3)
        return line[:start] + value + line[end:]
    if inner.strip():
        return line[:close].rstrip() + f", {key}: {value}" + line[close:]
    return line[:brace + 1] + f"{key}: {value}" + line[close:]


def set_value(text: str, path: tuple[str | int, ...], value: str) -> str:
    """Set the scalar at ``path`` in YAML ``text``, touching only the line that holds it (or adding one).

    Handles block mappings at every level, items of a block sequence (an int in ``path``) holding
    block mappings, and a one-line flow mapping (``{url: ..., sha256: null}``) as the innermost one.
    Raises UserError when the layout is beyond that.
    """
    lines = text.splitlines(keepends=True)
    masked: list[tuple[int, int]] = []  # item lines whose `-` is read as a space: its mapping's indent

    def done() -> str:
        for i, col in masked:
            lines[i] = lines[i][:col] + "-" + lines[i][col + 1:]
        return "".join(lines)

    start, stop, indent, parent = 0, len(lines), 0, -1
    scalar = _scalar(value)
    for depth, key in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(key, int):
            item = _find_item(lines, key, start, stop)
            if item is None or last:
                break
            col = _indent(lines[item[0]])
            lines[item[0]] = lines[item[0]][:col] + " " + lines[item[0]][col + 1:]
            masked.append((item[0], col))
            parent, (start, stop), indent = item[0], item, None
            continue
        found, indent = _find_key(lines, key, start, stop, indent)
        if found is None:
            if not last or parent < 0:
                break
            child = indent if indent is not None else _indent(lines[parent]) + 2
            if not lines[stop - 1].endswith("\n"):
                lines[stop - 1] += "\n"
            lines.insert(stop, " " * child + f"{key}: {scalar}\n")
            return done()
        match = _KEY.match(lines[found])
        rest = lines[found][match.end():]
        if last:
            begin, end = _value_span(lines[found], match.end() - 1)
            # `key:` with nothing after it (null) needs the space YAML wants after the colon
            lead = " " if begin == end and begin == match.end() else ""
            lines[found] = lines[found][:begin] + lead + scalar + lines[found][end:]
            return done()
        if rest.strip().startswith("{") and depth == len(path) - 2:
            lines[found] = _set_in_flow(lines[found], match.end() + rest.index("{"), path[-1], scalar)
            return done()
        parent, start, stop, indent = found, found + 1, _block_end(lines, found, len(match["indent"])), None
    raise UserError(f"params.yaml: cannot find {dotted(path)} in a layout this command edits; "
                    f"set it by hand to {value}")


def apply_pins(text: str, pins: list[Pin]) -> str:
    """``text`` with every pin written; checked by parsing: the pinned values changed and nothing else."""
    out = text
    for pin in pins:
        out = set_value(out, pin.path, pin.new)
    expected = yaml.safe_load(text)
    for pin in pins:
        node = expected
        for key in pin.path[:-1]:
            if isinstance(node, dict) and node.get(key) is None:  # `model_revisions:` with no entries yet
                node[key] = {}
            node = node[key]
        node[pin.path[-1]] = pin.new
    try:
        same = yaml.safe_load(out) == expected
    except yaml.YAMLError:
        same = False
    if not same:
        raise UserError("params.yaml: the line edits would change more than the pinned values; "
                        "pin by hand: " + "; ".join(p.describe() for p in pins))
    return out


def pin_project(root: Path | str = ".", *, params_file: str = "params.yaml",
                dry_run: bool = False) -> tuple[list[Pin], list[str], str]:
    """Plan the pins of a project and write them (unless ``dry_run`` or there are disagreements).

    Returns:
        (pins, problems, new text): nothing is written when ``problems`` is not empty.
    """
    root = Path(root)
    path = root / params_file
    text = path.read_text(encoding="utf-8")
    params = yaml.safe_load(text)
    raw_manifest = root / "data" / "raw" / "manifest.json"
    models_dir = root / "data" / "models"
    if not raw_manifest.is_file() and not models_dir.is_dir():
        raise UserError(f"{root}: no data/raw/manifest.json or data/models manifests; run `dvc repro` first")
    raw_files = _read_json(raw_manifest).get("files", {}) if raw_manifest.is_file() else {}
    pins, problems = plan_pins(params, raw_files, recorded_commits(models_dir) if models_dir.is_dir() else {},
                               recorded_evaluations(root))
    new = apply_pins(text, pins) if pins else text
    if not problems and not dry_run and new != text:
        from pipeline.atomic import write_text

        write_text(path, new)
    return pins, problems, new
