"""`dvc exp run -S key=value` must change exactly one line of the committed params.yaml.

DVC applies ``-S`` with ``dvc.utils.hydra.apply_overrides``: it loads params.yaml
with ruamel.yaml, sets the value and dumps the whole file again. Lines whose key
and value pass ruamel's width (80) are rewrapped and ``null`` is rewritten as an
empty value, so a badly shaped params.yaml turns a one-parameter experiment into
a diff of dozens of lines. This test runs DVC's own function on a copy of the
real params.yaml once per scalar param (all of them, so it keeps holding as
params.yaml grows) and compares the files line by line.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.params import Params, load_yaml

ROOT = Path(__file__).resolve().parents[1]
#: keys that Hydra's override grammar can address (hub ids such as klue/bert-base cannot be)
HYDRA_KEY = re.compile(r"^[A-Za-z_][\w-]*$")


def scalar_leaves(node, prefix: tuple[str, ...] = ()):
    """(dotted key path, value) of every scalar in the params mapping."""
    for key, value in node.items():
        path = prefix + (str(key),)
        if isinstance(value, dict):
            yield from scalar_leaves(value, path)
        elif not isinstance(value, list):
            yield path, value


def changed(value):
    """A different value of the same type (and, for strings, the same length)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 if value else 0.5
    if value is None or value == "":
        return "x"
    return value[:-1] + ("y" if value[-1] == "x" else "x")


def hydra_value(value) -> str:
    """``value`` as the text after ``-S key=``: quoted strings, YAML-style scalars."""
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return repr(value).lower() if isinstance(value, bool) else repr(value)


def set_in(data: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def test_round_trip_leaves_the_file_unchanged(tmp_path):
    from dvc.utils.serialize import modify_yaml

    target = tmp_path / "params.yaml"
    shutil.copyfile(ROOT / "params.yaml", target)
    with modify_yaml(target):
        pass  # what every `-S` does to the lines it does not change
    assert target.read_text(encoding="utf-8") == (ROOT / "params.yaml").read_text(encoding="utf-8")


def test_each_set_param_changes_exactly_one_line(tmp_path):
    from dvc.utils.hydra import apply_overrides

    original_text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    original = yaml.safe_load(original_text)
    leaves = [(p, v) for p, v in scalar_leaves(original) if all(HYDRA_KEY.match(k) for k in p)]
    assert {"temp", "sources.corpus.sha256", "published.enabled", "report_note"} <= {".".join(p) for p, _ in leaves}
    failures = []
    for path, value in leaves:
        target = tmp_path / "params.yaml"
        target.write_text(original_text, encoding="utf-8")
        new = changed(value)
        apply_overrides(target, [f"{'.'.join(path)}={hydra_value(new)}"])
        text = target.read_text(encoding="utf-8")
        before, after = original_text.splitlines(), text.splitlines()
        diff = [(a, b) for a, b in zip(before, after) if a != b]
        expected = load_yaml(original_text)
        set_in(expected, path, new)
        assert load_yaml(text) == expected, path  # as the stages read it
        if len(before) != len(after) or len(diff) != 1:
            failures.append(f"-S {'.'.join(path)}: {len(after) - len(before):+d} lines, "
                            f"{len(diff)} changed, first: {diff[:2]}")
    assert not failures, "\n".join(failures)


def test_an_exponent_float_written_by_dvc_reads_as_a_float(tmp_path):
    """`dvc exp run -S lr=6e-05` writes `lr: 6e-05` (YAML 1.2 float); PyYAML alone reads a string."""
    from dvc.utils.hydra import apply_overrides

    target = tmp_path / "params.yaml"
    shutil.copyfile(ROOT / "params.yaml", target)
    apply_overrides(target, ["lr=6e-05"])
    assert "\nlr: 6e-05 " in target.read_text(encoding="utf-8")
    assert yaml.safe_load(target.read_text(encoding="utf-8"))["lr"] == "6e-05"  # the trap
    assert Params.load(target).get("lr") == 6e-05


@pytest.mark.parametrize("line", ["url: https://example.org/" + "a" * 80, "sha256: null"])
def test_a_badly_shaped_line_is_caught(tmp_path, line):
    """The check above does fail for the two shapes that DVC rewrites (a long value, a null)."""
    from dvc.utils.hydra import apply_overrides

    target = tmp_path / "params.yaml"
    text = f"temp: 0.05\nsrc:\n  {line}\n"
    target.write_text(text, encoding="utf-8")
    apply_overrides(target, ["temp=0.1"])
    changed_lines = [a for a, b in zip(text.splitlines(), target.read_text(encoding="utf-8").splitlines()) if a != b]
    assert len(changed_lines) > 1


def test_source_roots_expand_to_the_full_urls():
    """The shortened params.yaml names the same files as before: root + revision + path."""
    from pipeline.params import Params
    from stages.download import read_params

    sources, _ = read_params(Params.load(ROOT / "params.yaml"))
    assert sources["klue_dev"]["url"] == ("https://raw.githubusercontent.com/KLUE-benchmark/KLUE/{revision}/"
                                          "klue_benchmark/klue-sts-v1.1/klue-sts-v1.1_dev.json")
    assert sources["corpus"]["url"] == ("https://github.com/snumin44/SimCSE-KO/releases/download/{revision}/"
                                        "korean_wiki_1m.txt")
    assert sources["corpus"]["sha256"] is None  # an empty value = not pinned, as null was
    assert all("{revision}" in s["url"] and s["url"].startswith("https://") for s in sources.values())


def test_unknown_source_root_is_one_line_error():
    from pipeline.errors import UserError
    from pipeline.sources import source_url

    with pytest.raises(UserError, match=r"sources.corpus.url = '\{gh\}/x': unknown placeholder \{gh\}; "
                                        r"expected \{revision\} or a source_roots entry \(kornlu\)"):
        source_url("corpus", "{gh}/x", {"kornlu": "https://example.org"})
    assert source_url("corpus", "{kornlu}/{revision}/a.tsv", {"kornlu": "https://e.org"}) == \
        "https://e.org/{revision}/a.tsv"
