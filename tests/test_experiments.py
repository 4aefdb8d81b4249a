"""The experiments comparison: parsing `dvc exp show --json`, params that differ, the table, sweeps.

The end-to-end check (a real queued `temp` sweep in a copy of the smoke project with one experiment that
fails, every number of the report against the experiments' metrics files, the paired interval against the
predictions `dvc exp apply` checks out) is in tests/test_e2e_experiments.py.
"""

from __future__ import annotations

import re

import pytest

from pipeline.errors import UserError
from pipeline.experiments import differing, flatten, parse_exp_show, sweeps, table

def printed(markdown: str, value: float, low: float, high: float, sign: bool = False) -> bool:
    """Whether a table cell shows ``value [low, high]`` at two decimals (bold or not)."""
    number = re.escape(f"{value:+.2f}" if sign else f"{value:.2f}")
    interval = re.escape(f"[{low:.2f}, {high:.2f}]")
    return re.search(rf"\| (\*\*)?{number}(\*\*)? {interval} \|", markdown) is not None


BASE_PARAMS = {"temp": 0.05, "lr": 5e-5, "variants": {"bert-unsup": {"data": "wiki"}}, "seeds": []}


def _metrics(avg: float) -> dict:
    return {"data": {"korsts_test": {"avg": avg, "avg_ci_low": avg - 1, "avg_ci_high": avg + 1},
                     "klue_dev": {"avg": avg - 10, "avg_ci_low": avg - 12, "avg_ci_high": avg - 9}}}


def _state(rev: str, params: dict, avg: float | None, name: str | None = None) -> dict:
    metrics = {} if avg is None else {"metrics/bert-unsup.json": _metrics(avg),
                                      "metrics/baseline.json": _metrics(1.0),
                                      "dvclive/bert-unsup/metrics.json": {"data": {"x": 1}}}
    return {"rev": rev, "name": name, "error": None, "experiments": None,
            "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics}}


def _exp(rev: str, name: str, params: dict, avg: float | None, state: str | None) -> dict:
    return {"revs": [_state(rev, params, avg, name)], "name": name,
            "executor": None if state is None else {"state": state}}


SHOW = [
    _state("workspace", BASE_PARAMS, 70.0),
    {**_state("a" * 40, BASE_PARAMS, 70.0, "main"), "experiments": [
        _exp("b" * 40, "t01", {**BASE_PARAMS, "temp": 0.1}, 71.5, "success"),
        _exp("c" * 40, "t02", {**BASE_PARAMS, "temp": 0.2}, 69.0, None),
        _exp("d" * 40, "both", {**BASE_PARAMS, "temp": 0.2, "lr": 1e-4}, 72.0, "success"),
        _exp("e" * 40, "broken", {**BASE_PARAMS, "temp": 0.5}, None, "failed"),
        _exp("f" * 40, "waiting", {**BASE_PARAMS, "variants": {"bert-unsup": {"data": "nli"}}}, None, "queued"),
    ]},
]


def test_flatten_and_differing_name_every_changed_leaf():
    assert flatten(BASE_PARAMS) == {"temp": 0.05, "lr": 5e-5, "variants.bert-unsup.data": "wiki", "seeds": []}
    changed = {**BASE_PARAMS, "temp": 0.1, "variants": {"bert-unsup": {"data": "wiki", "lr": 1e-4}}}
    assert differing(BASE_PARAMS, changed) == {"temp": 0.1, "variants.bert-unsup.lr": 1e-4}
    assert differing(BASE_PARAMS, BASE_PARAMS) == {}


def test_parse_exp_show_keeps_every_experiment_with_its_state():
    baseline, runs = parse_exp_show(SHOW)
    assert (baseline.name, baseline.rev, baseline.state) == ("main", "a" * 40, "baseline")
    assert list(baseline.metrics) == ["bert-unsup"]  # not baseline.json, not dvclive
    assert baseline.metrics["bert-unsup"]["korsts_test"]["avg"] == 70.0
    assert [(r.name, r.state) for r in runs] == [("t01", "success"), ("t02", "success"), ("both", "success"),
                                                 ("broken", "failed"), ("waiting", "queued")]
    assert runs[0].metrics["bert-unsup"]["korsts_test"]["avg"] == 71.5 and runs[3].metrics == {}


def test_parse_exp_show_selects_named_experiments_and_rejects_unknown_ones():
    _, runs = parse_exp_show(SHOW, ["t02", "t01"])
    assert [r.name for r in runs] == ["t02", "t01"]
    with pytest.raises(UserError, match=r"experiment 'nope' not found .*expected one of: t01, t02, both, broken"):
        parse_exp_show(SHOW, ["nope"])


def _records() -> list[dict]:
    def cell(avg, diff=None, lo=None, hi=None):
        out = {"avg": avg, "ci_low": avg - 1, "ci_high": avg + 1}
        if diff is not None:
            out.update(diff=diff, diff_ci_low=lo, diff_ci_high=hi)
        return out
    return [
        {"experiment": "main", "rev": "a", "state": "baseline", "variant": "bert-unsup", "params": {},
         "korsts_test": cell(70.0), "klue_dev": cell(60.0)},
        {"experiment": "t01", "rev": "b", "state": "success", "variant": "bert-unsup", "params": {"temp": 0.1},
         "korsts_test": cell(71.5, 1.5, 0.5, 2.5), "klue_dev": cell(59.0, -1.0, -2.0, 0.1)},
        {"experiment": "t02", "rev": "c", "state": "success", "variant": "bert-unsup", "params": {"temp": 0.2},
         "korsts_test": cell(69.0, -1.0, -2.0, 0.0), "klue_dev": cell(61.25, 1.25, 0.25, 2.0)},
        {"experiment": "both", "rev": "d", "state": "success", "variant": "bert-unsup",
         "params": {"temp": 0.2, "lr": 1e-4}, "korsts_test": cell(68.0, -2.0, -3.0, -1.0), "klue_dev": cell(58.0)},
        {"experiment": "broken", "rev": "e", "state": "failed", "variant": None, "params": {"temp": 0.5},
         "error": ""},
    ]


def test_table_bolds_the_best_of_each_column_and_lists_failed_runs():
    lines = table(_records())
    assert lines[2] == "| main | baseline | bert-unsup | — | 70.00 [69.00, 71.00] |  | 60.00 [59.00, 61.00] |  |"
    assert lines[3] == ("| t01 | success | bert-unsup | `temp=0.1` | **71.50** [70.50, 72.50] | **+1.50** [0.50, 2.50] "
                        "| 59.00 [58.00, 60.00] | -1.00 [-2.00, 0.10] |")
    assert lines[4] == ("| t02 | success | bert-unsup | `temp=0.2` | 69.00 [68.00, 70.00] | -1.00 [-2.00, 0.00] "
                        "| **61.25** [60.25, 62.25] | **+1.25** [0.25, 2.00] |")
    assert lines[6] == "| broken | failed | — | `temp=0.5` |  |  |  |  |"
    assert len(lines) == 2 + 5


def test_sweeps_group_runs_by_what_else_they_change():
    baseline, _ = parse_exp_show(SHOW)
    records = _records()
    out = sweeps(baseline, records)
    assert list(out) == ["temp"]  # lr changes once, with temp: no curve
    assert out["temp"]["KorSTS test"]["bert-unsup"] == [(0.05, 70.0, 69.0, 71.0), (0.1, 71.5, 70.5, 72.5),
                                                       (0.2, 69.0, 68.0, 70.0)]
    assert out["temp"]["KLUE-STS dev"]["bert-unsup"][2] == (0.2, 61.25, 60.25, 62.25)


def test_sweeps_with_another_param_held_fixed_make_their_own_curve():
    baseline, _ = parse_exp_show(SHOW)
    records = _records()[:1] + [
        {**r, "params": {"temp": r["params"]["temp"], "epochs": 1}} for r in _records()[1:3]]
    out = sweeps(baseline, records)
    assert list(out) == ["temp (epochs=1)"]  # two points, not through the baseline (epochs differs there)
    assert out["temp (epochs=1)"]["KorSTS test"]["bert-unsup"] == [(0.1, 71.5, 70.5, 72.5), (0.2, 69.0, 68.0, 70.0)]


def test_stale_variants_read_dvc_lock_as_dvc_writes_it(tmp_path):
    """dvc.lock records `lr: 6e-05` (ruamel.yaml, YAML 1.2): read as the float `dvc exp show` reports,
    an experiment run with lr=6e-05 is not stale (PyYAML's YAML 1.1 reads the string '6e-05')."""
    import subprocess

    from dvc.utils.serialize import dumps_yaml

    from pipeline.experiments import Run, stale_variants
    from pipeline.project import GIT_ENV, project_env

    ran = {"params.yaml": {"lr": 6e-05, "temp": 0.05}}
    lock = {"schema": "2.0", "stages": {
        "train@bert-unsup": {"cmd": "x", "params": ran}, "evaluate@bert-unsup": {"cmd": "x", "params": ran},
        "train@bert-sup": {"cmd": "x", "params": {"params.yaml": {"lr": 6e-05, "temp": 0.1}}}}}
    (tmp_path / "dvc.lock").write_text(dumps_yaml(lock), encoding="utf-8")
    assert "lr: 6e-05\n" in (tmp_path / "dvc.lock").read_text(encoding="utf-8")
    env = {**project_env(), **GIT_ENV}
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-qm", "lock"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True)
    run = Run("exp", "HEAD", "success", {"lr": 6e-05, "temp": 0.05},
              metrics={"bert-unsup": {}, "bert-sup": {}, "roberta-sup": {}})
    assert stale_variants(tmp_path, run) == {"bert-sup", "roberta-sup"}  # another temp; no stage recorded
