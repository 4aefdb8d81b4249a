"""End to end: the smoke pipeline (real dvc.yaml, real stages) in a temporary project.

One smoke project is built per test run (about 3 minutes) and shared by the test workers
(``smoke_project`` in conftest.py); tests that change a project change a copy of it. The queued
sweep and `dvc repro` with a failing compared model are in test_e2e_experiments.py, so that a
second worker runs them. Marked ``slow``; deselect with -m "not slow".
"""

from __future__ import annotations

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
import yaml

from pipeline.metrics import KEYS
from tests.conftest import dvc, headline_rows, parse_tables, private_copy

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["bert-unsup", "bert-unsup-simcse", "bert-unsup-paper", "bert-sup", "roberta-unsup",
            "roberta-sup"]  # report order


@pytest.fixture(scope="session")
def project(smoke_project) -> Path:
    return smoke_project


@pytest.fixture(scope="session")
def report_dir(project) -> Path:
    return project.parent / "reports"


def test_report_tables_equal_the_metrics_json(report_dir):
    """The smoke report is a stand-in run: titled so, its eight-column tables hold our rows and the untrained
    baselines (no card rows, no Δ ours − card), and its headline's trained/untrained/Δ cells equal metrics.json."""
    markdown = (report_dir / "README.md").read_text(encoding="utf-8")
    metrics = json.loads((report_dir / "metrics.json").read_text(encoding="utf-8"))
    assert markdown.startswith("# Smoke run of the SimCSE-KO pipeline: tiny random models, not a reproduction\n")
    assert "Δ ours − card" not in markdown and "SimCSE-BERT-KO (unsup)" not in markdown
    tables = parse_tables(markdown)
    for bench, title in (("korsts_test", "KorSTS test"), ("klue_dev", "KLUE-STS dev")):
        rows = tables[title]
        assert rows[0] == ["Model", "AVG", "Cosine Pearson", "Cosine Spearman", "Euclidean Pearson",
                           "Euclidean Spearman", "Manhattan Pearson", "Manhattan Spearman", "Dot Pearson",
                           "Dot Spearman"]
        ours = [r for r in rows if r[0].endswith("— ours")]
        assert [r[0] for r in ours] == [f"{v} — ours" for v in VARIANTS]  # the card's row order
        assert not [r for r in rows if "card" in r[0]]
        checked = 0
        for variant, row in zip(VARIANTS, ours):
            block = metrics["variants"][variant][bench]
            for key, cell in zip(KEYS, row[1:]):
                value, half = (float(x) for x in cell.split(" ± "))
                assert value == pytest.approx(round(block[key], 2), abs=1e-9)
                assert half == pytest.approx(round((block[f"{key}_ci_high"] - block[f"{key}_ci_low"]) / 2, 2),
                                             abs=1e-9)
                checked += 1
        assert checked == len(VARIANTS) * len(KEYS)
        baseline_rows = [r for r in rows if r[0].endswith("— untrained baseline")]
        assert [r[0] for r in baseline_rows] == ["tiny-bert — untrained baseline", "tiny-roberta — untrained baseline"]
        for row, block in zip(baseline_rows, metrics["baseline"].values()):
            assert float(row[1].split(" ± ")[0]) == pytest.approx(round(block[bench]["avg"], 2), abs=1e-9)
    header, *rows = headline_rows(markdown)
    assert len(header) <= 8 and len(rows) == 2 * len(VARIANTS)
    titles = {"KorSTS test": "korsts_test", "KLUE-STS dev": "klue_dev"}
    for row in rows:
        variant, bench = row[0], titles[row[2]]
        block, diffs = metrics["variants"][variant][bench], metrics["trained_minus_untrained"][variant][bench]
        base = next(b for slug, b in metrics["baseline"].items() if slug.endswith(row[1]))[bench]
        for key, trained, untrained in (("avg", row[3], row[4]), ("cosine_spearman", row[5], row[6])):
            d = diffs[key]
            assert numbers(trained) == [round(block[key], 2), round(block[f"{key}_ci_low"], 2),
                                        round(block[f"{key}_ci_high"], 2)]
            assert numbers(untrained) == [round(base[key], 2), round(d["diff"], 2), round(d["ci_low"], 2),
                                          round(d["ci_high"], 2)]
            assert ("**" in untrained) == (d["ci_low"] <= 0 <= d["ci_high"])


def numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+", cell)]


def test_the_report_names_a_commit_of_this_repository_and_what_ran(report_dir):
    markdown = (report_dir / "README.md").read_text(encoding="utf-8")
    [line] = [l for l in markdown.splitlines() if l.startswith("Code: ")]
    [commit] = re.findall(r"`([0-9a-f]{40})`", line)
    assert subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT).returncode == 0
    assert "the commit that built this smoke project" in line
    settings = parse_tables(markdown)["Provenance"]
    assert settings[0] == ["Setting"] + [f"`{v}`" for v in VARIANTS]
    precision = next(r for r in settings if r[0] == "precision")
    assert precision[1:] == ["`fp32` (requested `fp16`)"] * len(VARIANTS)


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
    # every drawn figure linked once (a dev curve with fewer than 3 evaluations is a sentence instead)
    assert sorted(links) == sorted(f"figures/{p.name}" for p in (report_dir / "figures").glob("*.png"))
    assert len(links) >= 3 * len(VARIANTS) + 1  # + the compared encoders' figure
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
        # scratch under .cache/ (gitignored, dvcignored): the tokenize stages' content-keyed token cache and
        # the smoke run's hub download cache (its loopback hub's files)
        if rel.startswith((".cache/tokens/", ".cache/hf/")):
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
    assert "base_model" not in meta  # a local folder (the tiny model) has no hub id to name
    assert "tiny-bert (local folder, weights sha256 " in text
    results = meta["model-index"][0]["results"]
    # the smoke run reads no MTEB rows (mteb_rows: false): the index names the smoke files, not MTEB's dataset
    assert [r["dataset"]["name"].split(":")[0] for r in results] == ["KorSTS test", "KLUE-STS validation"]
    assert [r["dataset"]["type"] for r in results] == ["sources/sts-test.tsv", "sources/klue-sts-v1.1_dev.json"]
    assert "dkoterwa" not in text and "MTEB KorSTS" not in text
    values = {m["type"]: m["value"] for m in results[0]["metrics"]}
    clean = metrics["by_protocol"]["clean"]["korsts_test"]  # closest to MTEB's KorSTS: sentences as published
    assert len(values) == 9 and values["main_score"] == round(clean["cosine_spearman"], 2)
    assert "pooler_output" in text and "last_hidden_state" in text


def test_mteb_results_for_every_evaluated_model(project, report_dir):
    files = sorted(p.relative_to(report_dir / "mteb").as_posix() for p in (report_dir / "mteb").rglob("*.json"))
    ours = [f"simcse-ko-{v}-repro/no_revision_available/{t}.json" for v in VARIANTS for t in ("KLUE-STS", "KorSTS")]
    bases = [f"local--tiny-{m}/no_revision_available/{t}.json" for m in ("bert", "roberta")
             for t in ("KLUE-STS", "KorSTS")]
    from pipeline.smoke import SMOKE_HUB

    compared = [f"{repo.replace('/', '__')}/{spec.commit}/{t}.json" for repo, spec in SMOKE_HUB.items()
                for t in ("KLUE-STS", "KorSTS")]
    assert files == sorted(ours + bases + compared)
    metrics = json.loads((project / "metrics" / "bert-sup.json").read_text())
    klue = json.loads((report_dir / "mteb" / "simcse-ko-bert-sup-repro" / "no_revision_available" /
                       "KLUE-STS.json").read_text())
    score = klue["scores"]["validation"][0]
    assert score["main_score"] == metrics["by_protocol"]["card"]["klue_dev"]["cosine_spearman"] / 100
    assert klue["evaluation_time"] > 0 and klue["dataset_revision"] == "unknown"  # smoke sources have no revision
    assert klue["evaluated_on"].startswith("sources/klue-sts-v1.1_dev.json (commit none recorded, sha256 ")
    assert not any("klue/klue" in (report_dir / "mteb" / f).read_text() for f in files)


def _subsections(markdown: str, title: str) -> dict[str, list[list[str]]]:
    """{folded block's title up to its colon: table rows (header first)} of one `## ` section."""
    section = markdown.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    out = {}
    for part in section.split("<summary>")[1:]:
        name, body = part.split("</summary>", 1)
        out[name.split(":")[0].strip()] = [[c.strip() for c in line.strip("|").split("|")]
                                           for line in body.split("</details>")[0].splitlines()
                                           if line.startswith("|") and not set(line) <= set("|-: ")]
    return out


def test_compared_encoders_through_the_loopback_hub(project, report_dir):
    """The smoke run's `compare` models: fetched from the loopback hub at their commits, encoded as each one's
    files or params say (the same numbers as evaluating the served folder that way by hand), and shown in the
    report's section sorted by KorSTS-test AVG, with our variants, every cell equal to metrics.json."""
    from pipeline.download import sha256_file
    from pipeline.evaluate import evaluate_folders
    from pipeline.params import BootstrapConfig
    from pipeline.report import value_cell
    from pipeline.smoke import HUB_DIR, SMOKE_HUB
    from stages.evaluate import benchmark_paths

    metrics = json.loads((report_dir / "metrics.json").read_text(encoding="utf-8"))
    manifest = json.loads((project / "eval" / "compare" / "manifest.json").read_text(encoding="utf-8"))["models"]
    assert sorted(metrics["compare"]) == sorted(manifest) == sorted(SMOKE_HUB)
    expected = {"smoke-hub/tiny-mean-normalized": ("mean", True, ""), "smoke-hub/tiny-cls-prefix": ("cls", False, "query: "),
                "smoke-hub/tiny-pickle-mean": ("mean", False, ""), "smoke-hub/tiny-xlmr-e5": ("mean", True, "query: ")}
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    bootstrap = BootstrapConfig(**params["bootstrap"])
    for repo, (pooling, normalize, prefix) in expected.items():
        record, folder = manifest[repo], project / HUB_DIR / repo
        assert (record["pooling"], record["normalize"], record["prefix"]) == (pooling, normalize, prefix)
        assert record["commit"] == SMOKE_HUB[repo].commit and record["pinned"] is True
        if SMOKE_HUB[repo].pickle_weights:  # served as pytorch_model.bin only, converted on the way in
            assert not (folder / "model.safetensors").exists() and (folder / "pytorch_model.bin").is_file()
            assert "pytorch_model.bin" not in record["files"] and record["files"]["model.safetensors"]
        else:
            assert record["files"]["model.safetensors"] == sha256_file(folder / "model.safetensors")
        by_hand = evaluate_folders([folder], benchmark_paths(project / "data" / "raw"), protocol=params["protocol"],
                                   max_len=params["max_len"], batch_size=params["eval_batch_size"],
                                   bootstrap=bootstrap, pooler=pooling, normalize=normalize, prefix=prefix)
        assert metrics["compare"][repo]["korsts_test"] == by_hand["korsts_test"]
        assert metrics["compare"][repo]["klue_dev"] == by_hand["klue_dev"]
    assert manifest["smoke-hub/tiny-mean-normalized"]["embedding_from"].startswith("the repository's")
    assert manifest["smoke-hub/tiny-cls-prefix"]["embedding_from"].startswith("params.yaml")

    markdown = (report_dir / "README.md").read_text(encoding="utf-8")
    tables = _subsections(markdown, "Korean sentence encoders under this protocol")
    blocks = {v: metrics["variants"][v] for v in VARIANTS}  # a stand-in run: variant names, not the card's rows
    blocks.update(metrics["compare"])
    order = sorted(blocks, key=lambda label: -blocks[label]["korsts_test"]["avg"])
    for bench, title in (("korsts_test", "KorSTS test"), ("klue_dev", "KLUE-STS dev")):
        header, *rows = tables[title]
        assert header[:4] == ["Model", "Kind", "Embedding", "STS training data"]
        assert [r[0] for r in rows] == order
        for row in rows:
            assert row[4:] == [value_cell(blocks[row[0]][bench], k) for k in KEYS]
        kinds = {r[0]: (r[1], r[2], r[3]) for r in rows}
        assert kinds["smoke-hub/tiny-mean-normalized"] == ("compared", "mean + Normalize", "-")
        assert kinds["smoke-hub/tiny-cls-prefix"] == ("compared", "[CLS], prefix `query: `",
                                                     "KorSTS train (pretend, to show the column)")
        assert kinds["smoke-hub/tiny-pickle-mean"] == ("compared", "mean", "-")
        assert kinds["smoke-hub/tiny-xlmr-e5"] == ("compared", "mean + Normalize, prefix `query: `", "-")
        assert kinds["bert-unsup"][0] == "ours"


def test_pin_writes_back_exactly_what_the_smoke_run_recorded(project, tmp_path):
    """`simcse-ko pin` on the smoke run's own manifests: with every source's sha256 set back to null,
    pin restores the project's params.yaml byte for byte (its models are local: no commit to pin)."""
    pinned = (project / "params.yaml").read_text(encoding="utf-8")
    unpinned = re.sub(r"(?m)^(    sha256: )[0-9a-f]{64}$", r"\1null", pinned)
    assert unpinned.count("    sha256: null\n") == 7
    (tmp_path / "params.yaml").write_text(unpinned, encoding="utf-8")
    manifests = [project / "data" / "raw" / "manifest.json", *(project / "data" / "models").glob("**/manifest.json")]
    for manifest in manifests:
        copy = tmp_path / manifest.relative_to(project)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(manifest.read_bytes())
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "pin"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "params.yaml: 7 value(s) pinned; commit it: git commit params.yaml"
    assert (tmp_path / "params.yaml").read_text(encoding="utf-8") == pinned


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (DVC's .gitignore entries aside: their order follows the stages' order)."""
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*"))
            if f.is_file() and f.name != ".gitignore"}


#: the two variants whose whole chain an independent second project reruns: the two most different code
#: paths (the paper recipe: MLP head, clipping after unscaling, linear decay; supervised RoBERTa on triplets)
RERUN = ("bert-unsup-paper", "roberta-sup")


def test_an_independent_smoke_project_reproduces_the_first_byte_for_byte(project, report_dir, tmp_path):
    """Determinism across runs, and kill-and-resume through DVC, within make test's budget (a second full smoke
    run took 155 s): a second project built from scratch (its own generated data, tiny models and git
    repository) runs the whole chain of two variants. Its first `dvc repro` is cut by a SIGKILL of one training
    stage after that stage's first resumable checkpoint; the next `dvc repro` resumes it, and every file the
    project writes equals the first, uninterrupted run's. The report stage, run again on the first run's
    outputs, writes the same bytes as the published report."""
    from pipeline.smoke import create_project

    second = create_project(ROOT, tmp_path / "smoke")
    assert _files(second / "sources") == _files(project / "sources")  # generated data and tiny models
    killed, first_log = _kill_training_after_its_first_checkpoint(second, RERUN[0],
                                                                  *(f"evaluate@{v}" for v in RERUN))
    assert not (second / "models" / RERUN[0]).exists()  # nothing half-written in place of the output
    ran = dvc(second, "repro", *(f"evaluate@{v}" for v in RERUN)).stdout
    assert re.search(rf"^resuming seed 42 from step {killed}/\d+ ", ran, flags=re.M), ran[-3000:]
    # every stage that loads a model says where it runs (the smoke overlay's explicit `device: cpu`)
    for variant in RERUN:
        for stage in ("train", "evaluate"):
            assert re.search(rf"^{stage}@{variant}: device cpu \(.+, \d+ threads\)$", first_log + ran,
                             flags=re.M), stage
    for rel in ("data/raw", "data/train", *(f"{top}/{v}" for v in RERUN for top in (
            "data/models", "data/tokens", "models", "eval", "dvclive"))):
        first, again = _files(project / rel), _files(second / rel)
        assert first and again.keys() == first.keys(), rel
        for name in first:
            assert again[name] == first[name], f"{rel}/{name}"
    for variant in RERUN:
        rel = f"metrics/{variant}.json"
        assert (second / rel).read_bytes() == (project / rel).read_bytes(), rel
    assert not (second / "checkpoints" / RERUN[0]).exists()  # the resume scratch is removed on success
    _report_again_is_byte_identical(project, report_dir, tmp_path / "report")


def _kill_training_after_its_first_checkpoint(project: Path, variant: str, *targets: str) -> tuple[int, str]:
    """Run `dvc repro targets` and SIGKILL ``variant``'s train stage once it has saved a resumable checkpoint;
    return the checkpoint's step and DVC's output. DVC sees its stage fail and stops."""
    import torch

    from pipeline.project import project_env

    state = project / "checkpoints" / variant / "seed-42" / "state.pt"
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", *targets], cwd=project, env=project_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.exists(), "no checkpoint was written before the stage ended"
    [pid] = [pid for pid, cmd in _processes() if "\0stages.train\0" in cmd and f"\0--variant\0{variant}\0" in cmd]
    os.kill(pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and f"failed to reproduce 'train@{variant}'" in out, out[-3000:]
    return torch.load(state, weights_only=False)["step"], out


def _processes() -> list[tuple[int, str]]:
    """(pid, NUL-separated command line) of every process (Linux)."""
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            out.append((int(cmdline.parent.name), cmdline.read_bytes().decode(errors="replace")))
        except OSError:
            continue
    return out


def _report_again_is_byte_identical(project: Path, report_dir: Path, out: Path) -> None:
    from pipeline.project import project_env

    result = subprocess.run([sys.executable, "-m", "stages.report", "--out", str(out), "--metrics", "metrics",
                             "--eval", "eval", "--models", "models", "--live", "dvclive", "--raw", "data/raw",
                             "--data-models", "data/models", "--train", "data/train", "--timings", "timings"],
                            cwd=project, env=project_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    published = _files(report_dir)
    assert _files(out).keys() == published.keys()
    # the report names the repository commit that built the project (report_code), not the project's own
    # commit, which has moved on since (the smoke run committed its results): the rerun is byte-identical
    ran_at = re.search(r"Code: this repository's commit `([0-9a-f]{40})`", published["README.md"].decode()).group(1)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert head != ran_at
    for name in ("README.md", "metrics.json"):
        assert (out / name).read_bytes() == published[name], name


def changed_stages(project: Path, **changes) -> set[str]:
    """Stages `dvc status` reports as changed after setting dotted params (params.yaml restored after)."""
    import yaml

    path = project / "params.yaml"
    original = path.read_text(encoding="utf-8")
    params = yaml.safe_load(original)
    for dotted, value in changes.items():
        node = params
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    try:
        path.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return set(json.loads(dvc(project, "status", "--json").stdout))
    finally:
        path.write_text(original, encoding="utf-8")


def test_the_graph_reruns_only_what_a_change_touches(project, tmp_path):
    project = private_copy(project, tmp_path / "smoke")  # changed_stages edits params.yaml
    assert changed_stages(project) == set()
    # one variant's base model: that variant's chain, the baseline (a new base model to evaluate) and the report
    assert changed_stages(project, **{"variants__roberta-unsup__model": "sources/tiny-bert"}) == {
        "validate", "fetch_model@roberta-unsup", "tokenize@roberta-unsup", "train@roberta-unsup", "baseline", "report"}
    # training settings: training only (evaluate, package and report follow once the models change)
    trains = {f"train@{v}" for v in VARIANTS}
    assert changed_stages(project, recipe="simcse") == {"validate"} | trains
    assert changed_stages(project, temp=0.1) == {"validate"} | trains
    # evaluation settings: no download, fetch, tokenize or train
    assert changed_stages(project, **{"bootstrap__resamples": 500}) == {
        "validate", "baseline", "published", "compare", "report"} | {f"evaluate@{v}" for v in VARIANTS}
    # the compared encoders: that stage only (the report follows once its metrics change)
    assert changed_stages(project, compare=[]) == {"validate", "compare"}


def test_push_to_a_remote_and_pull_into_a_fresh_clone(project, tmp_path):
    project = private_copy(project, tmp_path / "smoke")  # a remote in its config, a commit of its results
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
