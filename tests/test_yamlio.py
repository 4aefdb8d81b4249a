"""pipeline.yamlio reads and writes YAML exactly as DVC 3.67.1 does: its reader against DVC's
``parse_yaml`` (YAML 1.2 scalars PyYAML reads otherwise), its writer against DVC's ``dumps_yaml``
and ``modify_yaml``, and a params file that is not YAML is one error line naming the file and line."""

from __future__ import annotations

import datetime
import math

import pytest
import yaml
from dvc.utils.serialize import dumps_yaml, modify_yaml, parse_yaml

from pipeline import yamlio
from pipeline.errors import UserError
from pipeline.params import Params
from tests.conftest import ROOT

#: scalars whose meaning depends on the YAML version or the reader: (text, what DVC reads)
TRICKY = {
    "yes": "yes", "no": "no", "on": "on", "off": "off", "y": "y", "NO": "NO", "True": True, "FALSE": False,
    "0o17": 15, "017": 17, "0x1F": 31, "0b101": 5, "1_000": 1000, "+12": 12, "-0": 0,
    "6e-05": 6e-05, "5.0e-5": 5e-05, "1e3": 1000.0, ".5": 0.5, "1.": 1.0, "-.inf": -math.inf,
    "1:20": "1:20", "190:20:30": "190:20:30", "~": None, "Null": None, "": None, "2024-01-01": datetime.date(2024, 1, 1),
    "'0o17'": "0o17", '"6e-05"': "6e-05", "main": "main", "5e0c5e0c": "5e0c5e0c",
}


def typed(value):
    """``value`` with every leaf as (type name, value): 1 == 1.0 == True in Python, not in YAML."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return type(value).__name__, value


def test_reader_reads_tricky_scalars_as_dvc_does():
    text = "".join(f"k{i}: {scalar}\n" for i, scalar in enumerate(TRICKY))
    ours, dvcs = yamlio.load(text), parse_yaml(text, "params.yaml")
    assert typed(ours) == typed(dvcs)
    assert typed(ours) == typed({f"k{i}": value for i, value in enumerate(TRICKY.values())})
    # the old reader's YAML 1.1 answers (PyYAML) differ on these: the test would catch its return
    pyyaml = yaml.safe_load(text)
    keys = {scalar: f"k{i}" for i, scalar in enumerate(TRICKY)}
    assert [pyyaml[keys[s]] for s in ("yes", "on", "0o17", "017", "6e-05", "1:20")] == \
        [True, True, "0o17", 15, "6e-05", 80]


@pytest.mark.parametrize("rel", ["params.yaml", "smoke/params.yaml", "rehearsal/params.yaml"])
def test_reader_reads_the_params_files_as_dvc_does(rel):
    text = (ROOT / rel).read_text(encoding="utf-8")
    assert typed(yamlio.load(text)) == typed(parse_yaml(text, rel))
    assert typed(Params.load(ROOT / rel)._data) == typed(parse_yaml(text, rel))


def test_writer_writes_as_dvc_does():
    from pipeline.project import merged_params

    data = merged_params(ROOT, ROOT / "smoke" / "params.yaml")
    data["report_note"] = "A note " * 30 + "past DVC's line width."  # wrapped the same way
    data["lists"] = {"seeds": [1, 2], "none": None, "empty": {}, "korean": "카드 설정", "octal": "0o17"}
    assert yamlio.dump(data) == dumps_yaml(data)
    assert "\nmaster_addr:\n" in yamlio.dump(data)  # null as an empty value, as DVC writes it
    assert typed(yamlio.load(yamlio.dump(data))) == typed(data)


def test_round_trip_is_dvcs(tmp_path):
    """Load for update + dump = what DVC's modify_yaml (the mechanism of `dvc exp run -S`) writes."""
    text = ("# head\na: 1   # one\nb:\n  c: null\n  d: {x: 1}\n\n# after\nl:\n  - 1\n  - 'yes'\n"
            "long: " + "word " * 30 + "\n")
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with modify_yaml(path):
        pass
    assert yamlio.dump(yamlio.load_for_update(text)) == path.read_text(encoding="utf-8") != text


@pytest.mark.parametrize("text, where, problem", [
    ("temp: 0.05\ntemp: 0.1\n", "line 2", 'found duplicate key "temp"'),
    ("temp: [0.05\n", "line 2", "expected ',' or ']'"),
    ("temp: 0.05\n  lr: 1\n", "line 2", "mapping values are not allowed"),  # "here" (pure), "in this context" (C)
])
def test_params_that_are_not_yaml_are_one_line_with_the_line(tmp_path, text, where, problem):
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as info:
        Params.load(path)
    message = str(info.value)
    assert message.startswith(f"{path} {where}: not valid YAML (") and problem in message
    assert "\n" not in message
