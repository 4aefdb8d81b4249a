"""Hub downloads against a loopback server that speaks the Hugging Face hub's HTTP API.

The real code path (huggingface_hub's model_info + hf_hub_download, our retry and
error mapping, the manifest) runs with HF_ENDPOINT pointed at a local server
holding a tiny model: a branch resolves to a recorded commit with a warning, an
unknown id or revision is one clear line, and the published-checkpoint stage
evaluates a "published" model end to end.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from pipeline import fakehub
from pipeline.smoke_data import write_smoke_sources
from pipeline.tiny import build_tiny_model
from tests.conftest import run_module

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "fake-org/tiny-bert"


def make_handler(files: dict[str, bytes], repos: dict[str, tuple[str, dict[str, bytes]]] | None = None):
    """A hub serving ``files`` as REPO at COMMIT, or ``repos`` = {repo id: (commit, files)}."""
    return fakehub.make_handler(repos or {REPO: (COMMIT, files)})


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    sources = write_smoke_sources(root / "sources")
    model = build_tiny_model(sources["corpus"], root / "model", vocab_size=1500, hidden=32, heads=2,
                             intermediate=64)
    files = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(files))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_port}", "sources": sources, "files": files, "root": root}
    server.shutdown()


def project(tmp_path: Path, hub: dict, **changes) -> Path:
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text(encoding="utf-8"))
    params.update(changes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return tmp_path


def env(hub: dict, tmp_path: Path) -> dict:
    return {"HF_ENDPOINT": hub["url"], "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
            "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_branch_is_resolved_to_a_recorded_commit_with_a_warning(hub, tmp_path):
    root = project(tmp_path, hub, model=REPO, model_revisions={REPO: "main"},
                   variants={"bert-unsup": {"data": "wiki"}})
    result = run_module("stages.fetch_model", "--variant", "bert-unsup", "--out", "data/models/bert-unsup", cwd=root,
                        env=env(hub, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resolved to {COMMIT}" in result.stdout and "not a commit" in result.stdout
    record = json.loads((root / "data/models/bert-unsup/manifest.json").read_text())
    assert record["model"] == REPO
    assert record["commit"] == COMMIT and record["revision"] == "main" and record["pinned"] is False
    assert record["files"]["model.safetensors"] == hashlib.sha256(hub["files"]["model.safetensors"]).hexdigest()
    assert (root / "data/models/bert-unsup/tokenizer.json").read_bytes() == hub["files"]["tokenizer.json"]


def test_pinned_commit_gives_no_warning(hub, tmp_path):
    root = project(tmp_path, hub, model=REPO, model_revisions={REPO: COMMIT}, variants={"b": {"data": "wiki"}})
    result = run_module("stages.fetch_model", "--variant", "b", "--out", "data/models/b", cwd=root,
                        env=env(hub, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning" not in result.stdout
    assert json.loads((root / "data/models/b/manifest.json").read_text())["pinned"] is True


@pytest.mark.parametrize("model, revision, message", [
    ("fake-org/no-such-model", "main", "unknown hub id"),
    (REPO, "v9-does-not-exist", "revision not found"),
])
def test_unknown_id_or_revision_is_one_clear_line(hub, tmp_path, model, revision, message):
    root = project(tmp_path, hub, model=model, model_revisions={model: revision}, variants={"b": {"data": "wiki"}})
    result = run_module("stages.fetch_model", "--variant", "b", "--out", "data/models/b", cwd=root,
                        env=env(hub, tmp_path))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0] and model in lines[0]
    assert "Traceback" not in result.stderr and not (root / "data/models/b").exists()


def test_published_stage_evaluates_a_hub_checkpoint(hub, tmp_path):
    root = project(tmp_path, hub, device="cpu", published={"enabled": True, "checkpoints": {
        "bert-unsup": {"id": REPO, "revision": "main"}}})
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(hub["sources"]["korsts_test"], raw / "korsts_test.tsv")
    shutil.copy(hub["sources"]["klue_dev"], raw / "klue_dev.json")
    result = run_module("stages.published", "--raw", "data/raw", "--metrics", "metrics/published.json",
                        "--predictions", "eval/published", cwd=root, env=env(hub, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((root / "metrics/published.json").read_text())
    assert set(metrics) == {"bert-unsup"} and {"korsts_test", "klue_dev"} <= set(metrics["bert-unsup"])
    manifest = json.loads((root / "eval/published/manifest.json").read_text())
    assert manifest["checkpoints"]["bert-unsup"]["commit"] == COMMIT
    assert (root / "eval/published/korsts_test.bert-unsup.tsv").is_file()
    # the same numbers as evaluating the served model from a local folder ([CLS], max length 64, as the card)
    local = root / "local"
    local.mkdir()
    for name, data in hub["files"].items():
        (local / name).write_bytes(data)
    again = run_module("pipeline.cli", "evaluate", "local", "--korsts-test", "data/raw/korsts_test.tsv",
                       "--klue-dev", "data/raw/klue_dev.json", "--json", "local.json", cwd=root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((root / "local.json").read_text()) == metrics["bert-unsup"]


def test_published_stage_records_a_pinned_commit_that_no_longer_resolves_and_scores_the_others(hub, tmp_path):
    gone = "f" * 40
    root = project(tmp_path, hub, device="cpu", published={"enabled": True, "checkpoints": {
        "bert-unsup": {"id": REPO, "revision": COMMIT}, "bert-sup": {"id": REPO, "revision": gone}}})
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(hub["sources"]["korsts_test"], raw / "korsts_test.tsv")
    shutil.copy(hub["sources"]["klue_dev"], raw / "klue_dev.json")
    result = run_module("stages.published", "--raw", "data/raw", "--metrics", "metrics/published.json",
                        "--predictions", "eval/published", cwd=root, env=env(hub, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    reason = f"{REPO}@{gone}: revision not found on the hub; check the pinned revision"
    assert [line for line in result.stdout.splitlines() if line.startswith("warning:")] == [
        f"warning: published.checkpoints.bert-sup: not scored, the others are: {reason} (once fixed, rerun the "
        "stage with `dvc repro -f`: DVC counts this run as done)"]
    assert set(json.loads((root / "metrics/published.json").read_text())) == {"bert-unsup"}
    manifest = json.loads((root / "eval/published/manifest.json").read_text())
    assert manifest["failed"] == [{"variant": "bert-sup", "id": REPO, "revision": gone, "reason": reason}]
    assert set(manifest["checkpoints"]) == {"bert-unsup"}
    assert sorted(p.name for p in (root / "eval/published").iterdir()) == [
        "klue_dev.bert-unsup.tsv", "korsts_test.bert-unsup.tsv", "manifest.json"]


SPY = '''
import json, os, sys
from pathlib import Path

import pipeline.evaluate as ev
from pipeline.hubeval import evaluate_checkpoint
from pipeline.params import BootstrapConfig

real, seen = ev.evaluate_folders, {}


def spy(folders, *args, **kwargs):  # what the evaluation reads, while it exists
    folder = Path(folders[0])
    seen.update({p.name: {"link": p.is_symlink(), "inode": os.stat(p).st_ino} for p in folder.iterdir()})
    return real(folders, *args, **kwargs)


ev.evaluate_folders = spy
cfg = {"protocol": "card", "batch_size": 64, "max_len": 32, "device": "cpu",
       "bootstrap": BootstrapConfig(resamples=10, confidence=0.95, seed=0)}
out = Path("eval")
out.mkdir()
evaluate_checkpoint(sys.argv[1], sys.argv[2], {"korsts_test": Path("korsts_test.tsv")}, cfg, label="x",
                    predictions_dir=out, device="cpu")
print(json.dumps(seen))
'''


def test_a_hub_checkpoint_is_evaluated_from_the_hub_cache_so_its_weights_are_stored_once(hub, tmp_path):
    """The evaluated folder links to the hub cache's blobs (no second copy of the weights), and the
    preflight's disk estimate counts exactly the weight bytes the evaluation stored."""
    from pipeline.estimate import ModelSize, disk_needed

    (tmp_path / "spy_eval.py").write_text(SPY, encoding="utf-8")
    shutil.copy(hub["sources"]["korsts_test"], tmp_path / "korsts_test.tsv")
    result = run_module("spy_eval", REPO, COMMIT, cwd=tmp_path, env=env(hub, tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(seen) == set(hub["files"]) and all(f["link"] for f in seen.values())
    blobs = {p.stat().st_ino: p for p in (tmp_path / "hf-home").rglob("*") if p.is_file() and not p.is_symlink()}
    weights = hub["files"]["model.safetensors"]
    assert blobs[seen["model.safetensors"]["inode"]].read_bytes() == weights  # the evaluated file is the cached one
    stored = sum(p.stat().st_size for p in blobs.values() if p.read_bytes() == weights)
    assert stored == len(weights)  # one copy in all of HF_HOME; the evaluated folder held only links
    parts = disk_needed(base={}, hub_models=[], variant_models={}, variant_examples={}, seeds=1, sources={},
                        published=[ModelSize(bytes=len(weights), nonembedding=0)])
    assert parts["hub checkpoints"] == stored
    assert (tmp_path / "eval" / "korsts_test.x.tsv").is_file()
