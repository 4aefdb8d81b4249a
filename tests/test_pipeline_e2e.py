"""End to end: the smoke pipeline (real dvc.yaml, real stages) in a temporary project.

One smoke project is built per test session (about 2 minutes on 2 cores) and
shared; tests that change it run last. Marked ``slow``; deselect with -m "not slow".
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.card import CARD, card_row, row_label
from pipeline.metrics import KEYS
from tests.conftest import parse_tables

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["bert-unsup", "bert-unsup-simcse", "bert-sup", "roberta-unsup", "roberta-sup"]  # report order


def smoke(target: Path, reports: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, "-m", "pipeline.smoke", "--dir", str(target), "--reports", str(reports)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)


def dvc(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    from pipeline.project import project_env

    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=project_env(),
                            capture_output=True, text=True, timeout=1200)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    result = smoke(root / "smoke", root / "reports")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return root / "smoke"


@pytest.fixture(scope="session")
def report_dir(project) -> Path:
    return project.parent / "reports"


def test_report_tables_equal_the_metrics_json(report_dir):
    markdown = (report_dir / "README.md").read_text(encoding="utf-8")
    metrics = json.loads((report_dir / "metrics.json").read_text(encoding="utf-8"))
    tables = parse_tables(markdown)
    for bench, title in (("korsts_test", "KorSTS test"), ("klue_dev", "KLUE-STS dev")):
        rows = tables[title]
        assert rows[0] == ["Model", "AVG", "Cosine Pearson", "Cosine Spearman", "Euclidean Pearson",
                           "Euclidean Spearman", "Manhattan Pearson", "Manhattan Spearman", "Dot Pearson",
                           "Dot Spearman"]
        ours = [r for r in rows if r[0].endswith("— ours")]
        assert [r[0] for r in ours] == [f"{row_label(v)} — ours" for v in VARIANTS]  # the card's row order
        checked = 0
        for variant, row in zip(VARIANTS, ours):
            block = metrics["variants"][variant][bench]
            card = CARD[bench][card_row(variant)]
            card_cells = next(r for r in rows if r[0] == f"{row_label(variant)} — card")
            delta_row = next(r for r in rows if r[0] == f"{row_label(variant)} — Δ ours − card")
            for key, cell, card_cell, delta_cell in zip(KEYS, row[1:], card_cells[1:], delta_row[1:]):
                value, half = (float(x) for x in cell.split(" ± "))
                assert value == pytest.approx(round(block[key], 2), abs=1e-9)
                assert half == pytest.approx(round((block[f"{key}_ci_high"] - block[f"{key}_ci_low"]) / 2, 2),
                                             abs=1e-9)
                assert float(card_cell) == card[key]
                assert float(delta_cell.strip("*")) == pytest.approx(round(block[key] - card[key], 2), abs=1e-9)
                outside = not block[f"{key}_ci_low"] <= card[key] <= block[f"{key}_ci_high"]
                assert delta_cell.startswith("**") == outside
                checked += 1
        assert checked == len(VARIANTS) * len(KEYS)
        baseline_rows = [r for r in rows if r[0].endswith("— untrained baseline")]
        assert len(baseline_rows) == 2
        for row, block in zip(baseline_rows, metrics["baseline"].values()):
            assert float(row[1].split(" ± ")[0]) == pytest.approx(round(block[bench]["avg"], 2), abs=1e-9)


def test_metrics_are_floats_with_stable_keys(project):
    for variant in VARIANTS:
        metrics = json.loads((project / "metrics" / f"{variant}.json").read_text())
        for bench in ("korsts_test", "klue_dev"):
            for key in KEYS:
                for suffix in ("", "_ci_low", "_ci_high"):
                    assert isinstance(metrics[bench][key + suffix], float)
            assert metrics[bench]["avg"] == pytest.approx(np.mean([metrics[bench][k] for k in KEYS[1:]]))
            for protocol in ("card", "clean"):
                assert set(metrics["by_protocol"][protocol][bench]) == set(KEYS)


def test_training_improves_on_the_untrained_model(report_dir):
    """The smoke data is learnable: every trained variant beats its untrained base on KorSTS test."""
    metrics = json.loads((report_dir / "metrics.json").read_text())
    base = {slug.split("--")[-1]: m["korsts_test"]["avg"] for slug, m in metrics["baseline"].items()}
    for variant in VARIANTS:
        model = "tiny-roberta" if variant.startswith("roberta") else "tiny-bert"
        assert metrics["variants"][variant]["korsts_test"]["avg"] > base[model]


def test_image_links_resolve_to_pngs(report_dir):
    markdown = (report_dir / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 4 * len(VARIANTS)
    for link in links:
        path = report_dir / link
        assert path.is_file(), link
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for other in re.findall(r"\]\(([^)!]+\.json)\)", markdown):
        assert (report_dir / other).is_file()


def test_report_names_no_machine_path(report_dir, project):
    markdown = (report_dir / "README.md").read_text(encoding="utf-8")
    assert str(project) not in markdown and str(Path.home()) + "/" not in markdown
    assert "sources/sts-test.tsv" in markdown  # sources as written in params


def test_pipeline_is_up_to_date_and_leaves_no_undeclared_files(project):
    status = dvc(project, "status")
    assert "up to date" in status.stdout, status.stdout
    declared = set()
    import yaml

    lock = yaml.safe_load((project / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        declared |= {o["path"] for o in stage.get("outs", [])}
    # files of the project itself: the first commit (the second one holds the pipeline's results)
    tracked = set(subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD~1"], cwd=project,
                                 capture_output=True, text=True, check=True).stdout.split())
    stray = []
    for path in project.rglob("*"):
        rel = path.relative_to(project).as_posix()
        if path.is_dir() or rel.startswith((".git/", ".dvc/")) or rel in tracked or rel.endswith(".gitignore") \
                or "__pycache__/" in rel:
            continue
        if rel == "dvc.lock" or any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in declared):
            continue
        stray.append(rel)
    assert stray == []
    assert not (project / "checkpoints" / "bert-unsup").exists()  # the resume scratch is removed on success


def test_sentence_transformers_loads_the_package_and_matches_evaluation(project):
    from sentence_transformers import SentenceTransformer

    from pipeline.data import load_benchmark
    from pipeline.evaluate import read_predictions
    from pipeline.metrics import pair_scores

    for variant in ("bert-unsup", "roberta-sup"):
        folder = project / "dist" / variant
        assert (folder / "README.md").read_text(encoding="utf-8").startswith("---\n")
        model = SentenceTransformer(str(folder), device="cpu")
        sts = load_benchmark("korsts", project / "data" / "raw" / "korsts_test.tsv", "card")
        e1 = model.encode(sts.sentence1, batch_size=64, convert_to_numpy=True)
        e2 = model.encode(sts.sentence2, batch_size=64, convert_to_numpy=True)
        gold, ours = read_predictions(project / "eval" / variant / "korsts_test.seed-42.tsv")
        np.testing.assert_allclose(gold, sts.scores)
        theirs = pair_scores(e1, e2)
        for sim in ("cosine", "dot"):
            np.testing.assert_allclose(theirs[sim], ours[sim], rtol=1e-4, atol=1e-5)


def test_model_card_metadata(project):
    import yaml

    text = (project / "dist" / "bert-unsup" / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("---\n")[1])
    metrics = json.loads((project / "metrics" / "bert-unsup.json").read_text())
    assert meta["language"] == ["ko"] and meta["pipeline_tag"] == "sentence-similarity"
    assert meta["base_model"] == "sources/tiny-bert"
    results = meta["model-index"][0]["results"]
    assert [r["dataset"]["name"] for r in results] == ["KorSTS test", "KLUE-STS dev"]
    values = {m["type"]: m["value"] for m in results[0]["metrics"]}
    assert len(values) == 8 and values["cosine_spearman"] == round(metrics["korsts_test"]["cosine_spearman"], 2)
    assert "pooler_output" in text and "last_hidden_state" in text


def test_two_smoke_runs_give_byte_identical_reports_and_metrics(project, report_dir, tmp_path):
    second = smoke(tmp_path / "smoke", tmp_path / "reports")
    assert second.returncode == 0, second.stderr[-3000:]
    for name in ("README.md", "metrics.json"):
        assert (tmp_path / "reports" / name).read_bytes() == (report_dir / name).read_bytes(), name
    for variant in VARIANTS:
        rel = Path("metrics") / f"{variant}.json"
        assert (tmp_path / "smoke" / rel).read_bytes() == (project / rel).read_bytes()


def test_killed_training_resumes_to_the_same_result(project, tmp_path):
    """SIGKILL the train stage after its first resumable checkpoint; the rerun resumes and ends identical."""
    args = ["-m", "stages.train", "--variant", "bert-unsup", "--tokens", "data/tokens/bert-unsup", "--models",
            "data/models", "--out", str(tmp_path / "models"), "--live", str(tmp_path / "live"), "--resume",
            str(tmp_path / "ckpt")]
    from pipeline.project import project_env

    state = tmp_path / "ckpt" / "seed-42" / "state.pt"
    proc = subprocess.Popen([sys.executable, *args], cwd=project, env=project_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert state.exists(), "no checkpoint was written before the run ended"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "models").exists()  # nothing half-written in place of the output
    rerun = subprocess.run([sys.executable, *args], cwd=project, env=project_env(), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming seed 42 from step" in rerun.stdout
    original = project / "models" / "bert-unsup" / "seed-42"
    resumed = tmp_path / "models" / "seed-42"
    assert (resumed / "model.safetensors").read_bytes() == (original / "model.safetensors").read_bytes()
    assert json.loads((resumed / "training.json").read_text()) == json.loads((original / "training.json").read_text())
    out = tmp_path / "metrics.json"
    evaluated = subprocess.run([sys.executable, "-m", "stages.evaluate", "--models", str(tmp_path / "models"),
                                "--raw", "data/raw", "--metrics", str(out), "--predictions", str(tmp_path / "pred")],
                               cwd=project, env=project_env(), capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert out.read_bytes() == (project / "metrics" / "bert-unsup.json").read_bytes()


def test_experiment_reruns_training_not_download_or_tokenize(project):
    result = dvc(project, "exp", "run", "--temp", "-S", "temp=0.1")
    log = result.stdout + result.stderr
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    skipped = set(re.findall(r"Stage '([^']+)' didn't change", log))
    assert {f"train@{v}" for v in VARIANTS} | {f"evaluate@{v}" for v in VARIANTS} | {"report"} <= ran
    assert {"download", "fetch_model", "corpus", "triplets"} | {f"tokenize@{v}" for v in VARIANTS} <= skipped
    assert not ran & {"download", "fetch_model"} and not any(s.startswith("tokenize@") for s in ran)
    shown = dvc(project, "exp", "show", "--csv", "--no-pager").stdout
    rows = list(csv.DictReader(io.StringIO(shown)))
    temps = {(r["Experiment"] or r["rev"]): r["temp"] for r in rows}
    assert "0.1" in temps.values() and "0.05" in temps.values()
    assert any(r["Experiment"] for r in rows)  # the experiment is listed by name
    assert "metrics/bert-unsup.json:korsts_test.avg" in rows[0]


def test_push_to_a_remote_and_pull_into_a_fresh_clone(project, tmp_path):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    dvc(project, "remote", "add", "-d", "storage", str(tmp_path / "remote"))
    dvc(project, "push")
    subprocess.run(["git", "add", "-A"], cwd=project, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "results"], cwd=project, check=True, env=env)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True, env=env)
    dvc(clone, "pull")
    status = dvc(clone, "status")
    assert "up to date" in status.stdout, status.stdout
    for rel in ("metrics/bert-unsup.json", "models/bert-unsup/seed-42/model.safetensors",
                "dist/roberta-sup/README.md", "reports/smoke/README.md"):
        assert (clone / rel).read_bytes() == (project / rel).read_bytes(), rel
