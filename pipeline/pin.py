"""`simcse-ko pin`: write what a run recorded back into params.yaml, so every later run is exact.

After a first real run, data/raw/manifest.json holds the sha256 of every
downloaded source, the data/models manifests the commit each base model's
revision resolved to, and eval/published and eval/compare the commits of the
hub checkpoints evaluated. ``pin`` copies those into params.yaml: a null
``sources.<key>.sha256`` gets the recorded hash, a branch name in
``model_revisions``, ``published.checkpoints.<name>.revision`` or
``compare[i].revision`` the recorded commit (a hub model or compared encoder
without a revision gets one). A pinned value that disagrees with the record is an error, never
overwritten. params.yaml is edited the way ``dvc exp run -S`` edits it, through
DVC's ruamel.yaml round trip (:mod:`pipeline.yamlio`), which keeps comments, order
and spacing: on a file shaped for that round trip (tests/test_params_yaml.py) a pin
changes exactly the lines of the pinned values, and a key it adds lands at the end
of its block, above the comment that follows. The result is checked with the
reader before it is written: the pinned values changed and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from pipeline import yamlio
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


# --- editing through DVC's round trip ------------------------------------------------


def _block(node: Any) -> bool:
    """A non-empty block mapping or sequence: its lines end where its last entry's do."""
    return isinstance(node, (CommentedMap, CommentedSeq)) and len(node) > 0 and not node.fa.flow_style()


def _last_line(container: Any, key: Any) -> tuple[Any, Any]:
    """(container, key) of the scalar on the last line of the entry ``container[key]``."""
    while _block(container[key]):
        container = container[key]
        key = next(reversed(container)) if isinstance(container, CommentedMap) else len(container) - 1
    return container, key


def _detach_following_lines(container: Any, key: Any) -> str:
    """Remove and return the blank and comment lines that follow the line of ``container[key]``.

    ruamel.yaml keeps them in one comment token with that line's own end-of-line comment (the text from
    ``# eol`` to the last following comment line): a mapping entry's in slot 2 of ``ca.items[key]``, a
    sequence item's in slot 0. The end-of-line part stays where it is.
    """
    slots = container.ca.items.get(key)
    slot = 2 if isinstance(container, CommentedMap) else 0
    token = slots[slot] if slots and len(slots) > slot else None
    if token is None or "\n" not in token.value:
        return ""
    eol, following = token.value.split("\n", 1)
    if eol:
        token.value = eol + "\n"
    else:
        slots[slot] = None
    return following


def _add_key(parent: Any, key: Any, name: str, value: str) -> None:
    """Add ``name: value`` to the mapping ``parent[key]`` (a null there becomes one) as its last entry,
    above the blank and comment lines that follow the block: ruamel.yaml would write it below them,
    as if those lines introduced it."""
    mapping = parent[key]
    if mapping is None:
        mapping = parent[key] = CommentedMap()
    if not isinstance(mapping, CommentedMap):
        raise KeyError(name)
    holder = _last_line(mapping, next(reversed(mapping))) if _block(mapping) else (parent, key)
    following = _detach_following_lines(*holder)
    mapping[name] = value
    if following:
        # the token's leading newline ends the new entry's line; CommentMark(0): no end-of-line comment
        mapping.ca.items[name] = [None, None, CommentToken("\n" + following, CommentMark(0), None), None]


def set_value(data: Any, path: tuple[str | int, ...], value: str) -> None:
    """Set the scalar at ``path`` in round-trip nodes (:func:`pipeline.yamlio.load_for_update`); a missing
    last key is added to its mapping (see :func:`_add_key`).

    Raises:
        UserError: a key or item on the way is missing, or is not a mapping or sequence.
    """
    parent, node = None, data
    try:
        for key in path[:-1]:
            parent, node = node, node[key]
        last = path[-1]
        if isinstance(node, CommentedSeq) or isinstance(node, CommentedMap) and last in node:
            node[last] = value
        elif parent is None or isinstance(last, int):
            raise KeyError(last)
        else:
            _add_key(parent, path[-2], last, value)
    except (KeyError, IndexError, TypeError):
        raise UserError(f"params.yaml: cannot find {dotted(path)} in a layout this command edits; "
                        f"set it by hand to {value}") from None


def apply_pins(text: str, pins: list[Pin]) -> str:
    """``text`` with every pin written the way `dvc exp run -S` writes a value (DVC's round trip), checked
    by parsing: the pinned values changed and nothing else."""
    data = yamlio.load_for_update(text)
    for pin in pins:
        set_value(data, pin.path, pin.new)
    out = yamlio.dump(data)
    expected = yamlio.load(text)
    for pin in pins:
        node = expected
        for key in pin.path[:-1]:
            if isinstance(node, dict) and node.get(key) is None:  # `model_revisions:` with no entries yet
                node[key] = {}
            node = node[key]
        node[pin.path[-1]] = pin.new
    if yamlio.load(out) != expected:
        raise UserError("params.yaml: the edits would change more than the pinned values; "
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
    params = yamlio.load(text)
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
