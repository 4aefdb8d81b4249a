"""End to end, on copies of the shared smoke project (``smoke_project`` in conftest.py): a queued DVC sweep
and its comparison report, and `dvc repro` with a compared model the hub does not have. In a file of their
own so that a second test worker runs them while the first runs test_pipeline_e2e.py. Marked ``slow``."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, dvc, private_copy
from tests.test_pipeline_e2e import VARIANTS

pytestmark = pytest.mark.slow


def _wait_for_queue(project: Path, successes: int, limit_s: float = 1800) -> None:
    """Until `dvc queue status` lists nothing queued or running (the queue's workers run in the background).
    A status call costs about a second of CPU: until ``successes`` experiment refs exist (each experiment
    that succeeds writes one) it is asked every 15 s, in case one fails; then every 3 s."""
    deadline, asked = time.monotonic() + limit_s, 0.0
    while time.monotonic() < deadline:
        done = len([p for p in (project / ".git" / "refs" / "exps").rglob("*") if p.is_file()])
        if time.monotonic() - asked > (3 if done >= successes else 15):
            status, asked = dvc(project, "queue", "status").stdout, time.monotonic()
            if not re.search(r"\b(Queued|Running)\b", status):
                return
        time.sleep(0.5)
    raise AssertionError(f"queue still busy after {limit_s:.0f}s:\n{status}")


def test_queued_temp_sweep_and_its_comparison_report(smoke_project, tmp_path):
    import yaml

    from tests.test_experiments import printed

    project = private_copy(smoke_project, tmp_path / "smoke")
    # a 2-value sweep through DVC's queue, one variant's chain only, one epoch to keep it short; and one
    # experiment whose params do not validate: listed as failed, not dropped
    dvc(project, "exp", "run", "--queue", "-S", "temp=0.1,0.2", "-S", "epochs=1", "evaluate@bert-unsup")
    dvc(project, "exp", "run", "--queue", "-S", "temp=-1", "-S", "epochs=1", "evaluate@bert-unsup")
    dvc(project, "queue", "start", "-j", "1")
    _wait_for_queue(project, successes=2)
    shown = json.loads(dvc(project, "exp", "show", "--json").stdout)
    head = next(entry for entry in shown if entry["rev"] != "workspace")
    swept = {}
    for exp in head["experiments"] or []:
        params = ((exp["revs"][0].get("data") or {}).get("params") or {}).get("params.yaml", {}).get("data", {})
        if params.get("epochs") == 1 and params.get("temp") in (0.1, 0.2):  # (not the failed one)
            swept[exp["name"]] = (exp["revs"][0]["rev"], params["temp"], (exp.get("executor") or {}).get("state"))
    assert sorted(t for _, t, _ in swept.values()) == [0.1, 0.2]  # `dvc exp show` lists both
    assert all(state in (None, "success") for _, _, state in swept.values()), swept
    # each experiment reran training, not download or tokenize (every variant's training reads temp, which
    # test_the_graph_reruns_only_what_a_change_touches checks; the sweep asks for one variant's chain)
    for name in swept:
        log = dvc(project, "queue", "logs", name).stdout
        ran = set(re.findall(r"Running stage '([^']+)'", log))
        skipped = set(re.findall(r"Stage '([^']+)' didn't change", log))
        assert ran == {"validate", "train@bert-unsup", "evaluate@bert-unsup"}, log[-3000:]  # validate: all params
        assert {"download", "corpus", "fetch_model@bert-unsup", "tokenize@bert-unsup"} <= skipped, log[-3000:]
    rows = list(csv.DictReader(io.StringIO(dvc(project, "exp", "show", "--csv", "--no-pager").stdout)))
    assert {r["Experiment"] for r in rows} >= set(swept)  # listed by name, with their params and metrics
    assert {r["temp"] for r in rows} >= {"0.05", "0.1", "0.2"}
    assert "metrics/bert-unsup.json:korsts_test.avg" in rows[0]

    out = tmp_path / "experiments"
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "experiments", "--project", str(project),
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    markdown = (out / "README.md").read_text(encoding="utf-8")
    failed = [r for r in report["rows"] if r["state"] == "failed"]
    assert [(r["params"], r["variant"], "korsts_test" in r) for r in failed] == [
        ({"epochs": 1, "temp": -1}, None, False)]
    failed_line = next(line for line in markdown.splitlines() if line.startswith(f"| {failed[0]['experiment']} |"))
    assert "| failed: Experiment run failed | — |" in failed_line and "temp=-1" in failed_line
    rows = [r for r in report["rows"] if r["state"] != "failed"]

    def committed(rev: str, rel: str) -> dict:
        return json.loads(subprocess.run(["git", "show", f"{rev}:{rel}"], cwd=project, capture_output=True,
                                         text=True, check=True).stdout)

    base_rev = report["baseline"]["rev"]
    for row in (r for r in rows if r["state"] == "baseline"):
        base_metrics = committed(base_rev, f"metrics/{row['variant']}.json")
        for bench in ("korsts_test", "klue_dev"):
            assert (row[bench]["avg"], row[bench]["ci_low"], row[bench]["ci_high"]) == (
                base_metrics[bench]["avg"], base_metrics[bench]["avg_ci_low"], base_metrics[bench]["avg_ci_high"])
            assert printed(markdown, row[bench]["avg"], row[bench]["ci_low"], row[bench]["ci_high"])
    for name, (rev, temp, _) in swept.items():
        ours = {r["variant"]: r for r in rows if r["experiment"] == name}
        assert set(ours) == set(VARIANTS)
        row = ours["bert-unsup"]
        assert row["state"] == "success" and row["params"] == {"epochs": 1, "temp": temp}
        # the other variants were not rerun: marked stale, no numbers borrowed from the baseline
        assert all(ours[v]["state"] == "stale" and "korsts_test" not in ours[v] for v in VARIANTS[1:])
        exp_metrics = committed(rev, "metrics/bert-unsup.json")
        base_metrics = committed(base_rev, "metrics/bert-unsup.json")
        for bench in ("korsts_test", "klue_dev"):
            cell = row[bench]
            assert (cell["avg"], cell["ci_low"], cell["ci_high"]) == (
                exp_metrics[bench]["avg"], exp_metrics[bench]["avg_ci_low"], exp_metrics[bench]["avg_ci_high"])
            assert cell["diff"] == exp_metrics[bench]["avg"] - base_metrics[bench]["avg"]
            assert cell["diff_ci_low"] <= cell["diff"] <= cell["diff_ci_high"]
            assert printed(markdown, cell["avg"], cell["ci_low"], cell["ci_high"])
            assert printed(markdown, cell["diff"], cell["diff_ci_low"], cell["diff_ci_high"], sign=True)
    # the report's table rows: the baseline's variants, then every swept experiment's, then the failed one
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(table_rows) == len(rows) + 1 == len(VARIANTS) * 3 + 1
    assert (out / "figures" / "sweep-1-temp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Sweep: `temp (epochs=1)`" in markdown
    # the baseline commit and the workspace are untouched
    assert yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))["temp"] == 0.05

    # the paired interval, recomputed from the predictions `dvc exp apply` checks out and the baseline's
    from pipeline.evaluate import read_predictions
    from pipeline.metrics import bootstrap_intervals

    boot = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))["bootstrap"]
    benches = ("korsts_test", "klue_dev")
    base = {b: read_predictions(project / f"eval/bert-unsup/{b}.seed-42.tsv") for b in benches}
    name = next(iter(swept))
    dvc(project, "exp", "apply", name)
    row = next(r for r in rows if r["experiment"] == name and r["variant"] == "bert-unsup")
    for bench in benches:
        gold, ours = read_predictions(project / f"eval/bert-unsup/{bench}.seed-42.tsv")
        ci = bootstrap_intervals(gold, [ours], baseline=[base[bench][1]], resamples=boot["resamples"],
                                 confidence=boot["confidence"], seed=boot["seed"])
        assert (row[bench]["diff_ci_low"], row[bench]["diff_ci_high"]) == ci["avg"]


def test_a_compared_model_that_cannot_be_fetched_costs_only_its_own_row(smoke_project, tmp_path):
    """`dvc repro` with one compared model the hub does not have: `compare` records it with its reason and
    scores the others as before, the stage succeeds, and the report still renders and names the failure."""
    from pipeline.project import project_env
    from pipeline.smoke import smoke_hub

    project = smoke_project
    copy = private_copy(project, tmp_path / "smoke")
    params = copy / "params.yaml"
    head, entries = params.read_text(encoding="utf-8").split("\ncompare:\n")  # `compare` is the last key
    first = "- id:" + entries.split("- id:")[1]  # one model that works (each compared model costs an evaluation)
    params.write_text(f"{head}\ncompare:\n{first}- id: smoke-hub/not-there\n  revision: '{'0' * 40}'\n",
                      encoding="utf-8")
    with smoke_hub(copy) as hub:
        result = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=copy, env={**project_env(), **hub},
                                capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert re.search(r"^warning: compare: smoke-hub/not-there", result.stdout, flags=re.M), result.stdout[-3000:]
    manifest = json.loads((copy / "eval/compare/manifest.json").read_text(encoding="utf-8"))
    assert [(f["id"], f["revision"]) for f in manifest["failed"]] == [("smoke-hub/not-there", "0" * 40)]
    assert "unknown hub id" in manifest["failed"][0]["reason"]
    before = json.loads((project / "metrics/compare.json").read_text(encoding="utf-8"))
    after = json.loads((copy / "metrics/compare.json").read_text(encoding="utf-8"))
    assert list(after) == ["smoke-hub/tiny-mean-normalized"]
    assert after["smoke-hub/tiny-mean-normalized"] == before["smoke-hub/tiny-mean-normalized"]  # as without it
    report = (copy / "reports/smoke/README.md").read_text(encoding="utf-8")
    section = report.split("## Models not scored\n", 1)[1].split("\n## ", 1)[0]
    assert f"- compared encoder `smoke-hub/not-there` at `{'0' * 40}` (stage `compare`): " in section
    assert "## Models not scored" not in (project / "reports/smoke/README.md").read_text(encoding="utf-8")
