"""`simcse-ko preflight` against a loopback HTTP server (the sources) and the fake hub of
test_fake_hub (the models): a good setup passes; a 404, an unknown revision, a missing tokenizer
and a CPU-only machine each give their line; disk and time estimates equal a hand computation."""

from __future__ import annotations

import hashlib
import http.server
import json
import math
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from safetensors import safe_open

from pipeline import estimate
from pipeline.download import remote_size
from pipeline.errors import UserError
from pipeline.params import Params
from pipeline.preflight import DeviceInfo, check_device, check_nproc, run_preflight, verdict
from pipeline.smoke_data import FILE_NAMES, write_smoke_sources
from pipeline.tiny import build_tiny_model
from tests.conftest import ROOT, run_module
from tests.test_fake_hub import COMMIT, REPO, make_handler

NO_TOKENIZER = "fake-org/no-tokenizer"
NO_WEIGHTS = "fake-org/no-weights"
CPU_ONLY = DeviceInfo(torch="2.13.0+cpu", cuda=None)
H100 = DeviceInfo(torch="2.13.0+cu128", cuda="12.8", gpus=("NVIDIA H100 80GB HBM3",), memory=85_045_280_768,
                  capability=(9, 0), bf16=True, fp16=True)


class Files(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` by name: /ok/<rev>/<name> answers HEAD; /nohead/<rev>/<name> refuses HEAD
    (405) and answers a ranged GET with 206 + Content-Range; anything else is a 404."""

    def log_message(self, *args):
        pass

    def _lookup(self) -> bytes | None:
        parts = self.path.strip("/").split("/")
        self.server.hits.append((self.command, parts[0], self.headers.get("Range")))
        return self.server.files.get(parts[-1]) if parts[0] in ("ok", "nohead") else None

    def _empty(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self):  # noqa: N802
        body = self._lookup()
        if body is None:
            return self._empty(404)
        if self.path.startswith("/nohead/"):
            return self._empty(405)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()

    def do_GET(self):  # noqa: N802
        body = self._lookup()
        if body is None:
            return self._empty(404)
        if self.headers.get("Range") == "bytes=0-0":
            self.send_response(206)
            self.send_header("Content-Range", f"bytes 0-0/{len(body)}")
            body = body[:1]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(handler, **attrs):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for key, value in attrs.items():
        setattr(server, key, value)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Generated sources over loopback HTTP; a tiny model on the fake hub as REPO, and again without
    its tokenizer files as NO_TOKENIZER and without its weights as NO_WEIGHTS."""
    root = tmp_path_factory.mktemp("preflight")
    sources = write_smoke_sources(root / "sources")
    model = build_tiny_model(sources["corpus"], root / "model", vocab_size=1500, hidden=32, heads=2,
                             intermediate=64)
    model_files = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    bare = {k: v for k, v in model_files.items() if not k.startswith("tokenizer")}
    unweighted = {k: v for k, v in model_files.items() if k != "model.safetensors"}
    hub = _serve(make_handler(model_files, {REPO: (COMMIT, model_files), NO_TOKENIZER: ("1" * 40, bare),
                                            NO_WEIGHTS: ("2" * 40, unweighted)}))
    files = _serve(Files, files={p.name: p.read_bytes() for p in sources.values()}, hits=[])
    yield SimpleNamespace(sources=sources, model=model, model_files=model_files, files=files,
                          url=f"http://127.0.0.1:{files.server_port}",
                          hub=f"http://127.0.0.1:{hub.server_port}", root=root)
    hub.shutdown()
    files.shutdown()


def _sources(world, prefix: dict[str, str] | None = None) -> dict:
    """params `sources`: every generated file over HTTP; korsts_test pinned, corpus behind /nohead/."""
    out = {}
    for key, name in FILE_NAMES.items():
        where = (prefix or {}).get(key, "nohead" if key == "corpus" else "ok")
        sha = hashlib.sha256(world.sources[key].read_bytes()).hexdigest() if key == "korsts_test" else None
        out[key] = {"url": f"{world.url}/{where}/{{revision}}/{name}", "revision": "r1", "sha256": sha}
    return out


def _project(tmp_path: Path, world, **changes) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params.update({"model": REPO, "model_revisions": {REPO: COMMIT}, "device": "cpu", "sources": _sources(world),
                   "variants": {"bert-unsup": {"data": "wiki"}, "bert-sup": {"data": "nli"}},
                   "published": {"enabled": True, "checkpoints": {"bert-unsup": {"id": REPO, "revision": COMMIT}}},
                   "compare": [{"id": REPO, "revision": COMMIT, "pooling": "cls"}]})
    params.update(changes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    # a run so far: korsts_test downloaded, the training sets built (small, so the disk check passes anywhere)
    (tmp_path / "data" / "raw").mkdir(parents=True)
    shutil.copy(world.sources["korsts_test"], tmp_path / "data" / "raw" / "korsts_test.tsv")
    for kind, record in (("wiki", {"sentences": 3000}), ("nli", {"triplets": 900})):
        (tmp_path / "data" / "train" / kind).mkdir(parents=True)
        (tmp_path / "data" / "train" / kind / "manifest.json").write_text(json.dumps(record), encoding="utf-8")
    shutil.copytree(ROOT / "reports" / "bench", tmp_path / "reports" / "bench")
    return tmp_path


def _env(world, tmp_path: Path) -> dict:
    return {"HF_ENDPOINT": world.hub, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
            "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}


def _lines(stdout: str) -> dict[str, str]:
    """{check name: whole line} from preflight's stdout (status, name, detail)."""
    out = {}
    for line in stdout.splitlines():
        if line.startswith(("ok ", "FAIL ", "info ")):
            out[line.split(None, 1)[1].split(": ", 1)[0]] = line
    return out


def test_a_good_setup_passes(world, tmp_path):
    root = _project(tmp_path, world)
    result = run_module("pipeline.cli", "preflight", cwd=root, env=_env(world, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error:" not in result.stderr and "Traceback" not in result.stderr
    lines = _lines(result.stdout)
    names = ["params", "device", "nproc", *(f"sources.{k}" for k in FILE_NAMES), f"model {REPO}",
             "published.checkpoints.bert-unsup", f"compare {REPO}", "disk"]
    assert all(lines[n].startswith("ok ") for n in names), result.stdout
    assert result.stdout.rstrip().splitlines()[-1] == f"verdict: ready: all {len(names)} checks passed"
    size = estimate.human_bytes(world.sources["korsts_test"].stat().st_size)
    assert lines["sources.korsts_test"] == (
        f"ok    sources.korsts_test: {world.url}/ok/r1/sts-test.tsv reachable ({size}), sha256 pinned; "
        "local copy data/raw/korsts_test.tsv matches")
    corpus = estimate.human_bytes(world.sources["corpus"].stat().st_size)
    assert f"reachable ({corpus}), sha256 not pinned; no local copy yet" in lines["sources.corpus"]
    # HEAD refused for the corpus: its size came from a one-byte GET
    assert ("GET", "nohead", "bytes=0-0") in world.files.hits
    # the fake hub lists no sizes, so the weights count as fp32 parameters (as many as the file holds)
    with safe_open(str(world.model / "model.safetensors"), "pt") as f:
        count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    weights = estimate.human_bytes(count * 4)
    assert f"{REPO}@{COMMIT}: commit {COMMIT}; model.safetensors ({weights}, " in lines[f"model {REPO}"]
    assert "tokenizer tokenizer.json" in lines[f"model {REPO}"]
    assert "train_throughput.tiny.cpu.md" in lines["time"]  # the CPU measurement nearest a tiny model
    assert "~" in lines["time train@bert-unsup"] and "3,000 wiki examples (data/train/wiki)" in result.stdout


def test_a_404_an_unknown_revision_and_a_missing_tokenizer_each_give_their_line(world, tmp_path):
    root = _project(tmp_path, world, sources=_sources(world, {"korsts_dev": "gone"}),
                    model_revisions={REPO: "v9-does-not-exist"},
                    published={"enabled": True, "checkpoints": {"bert-sup": {"id": NO_TOKENIZER, "revision": "main"}}},
                    compare=[{"id": "fake-org/gone", "revision": "main", "pooling": "cls"}])
    result = run_module("pipeline.cli", "preflight", cwd=root, env=_env(world, tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [
        f"error: sources.korsts_dev: {world.url}/gone/r1/sts-dev.tsv: HTTP 404 not found; "
        "check the URL and its pinned revision",
        f"error: model {REPO}: {REPO}@v9-does-not-exist: revision not found on the hub; check the pinned revision",
        f"error: published.checkpoints.bert-sup: {NO_TOKENIZER}@main: no tokenizer files "
        "(expected tokenizer.json, vocab.txt or vocab.json + merges.txt)",
        "error: compare fake-org/gone: fake-org/gone@main: unknown hub id (or private without a token); expected "
        "an existing model id or a local folder (for a private one, set HF_TOKEN or run `hf auth login` with a "
        "token that can read it)",
    ]
    lines = _lines(result.stdout)
    assert lines["sources.korsts_dev"].startswith("FAIL  sources.korsts_dev: ")
    assert lines["sources.korsts_test"].startswith("ok ")  # the others still checked
    assert lines["disk"] == "info  disk: not estimated: a base model could not be checked"
    assert result.stdout.rstrip().splitlines()[-1] == (
        f"verdict: NOT READY: 4 of 13 checks failed (sources.korsts_dev, model {REPO}, "
        "published.checkpoints.bert-sup, compare fake-org/gone)")


def test_a_changed_local_copy_missing_weights_and_a_vanished_commit_each_give_their_line(world, tmp_path):
    """The rest of what a first run can meet: a copy in data/raw that no longer matches its pinned sha256,
    a checkpoint without weights, and a pinned commit the hub no longer has (history rewritten)."""
    gone = "3" * 40
    root = _project(tmp_path, world, model_revisions={REPO: gone},
                    published={"enabled": True, "checkpoints": {"bert-sup": {"id": NO_WEIGHTS, "revision": "2" * 40}}},
                    compare=[])
    (root / "data" / "raw" / "korsts_test.tsv").write_bytes(world.sources["korsts_test"].read_bytes() + b"x")
    result = run_module("pipeline.cli", "preflight", cwd=root, env=_env(world, tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    pinned = hashlib.sha256(world.sources["korsts_test"].read_bytes()).hexdigest()
    changed = hashlib.sha256(world.sources["korsts_test"].read_bytes() + b"x").hexdigest()
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    size = estimate.human_bytes(world.sources["korsts_test"].stat().st_size)
    assert errors == [
        f"error: sources.korsts_test: {world.url}/ok/r1/sts-test.tsv reachable ({size}), but the local copy "
        f"data/raw/korsts_test.tsv has sha256 {changed}, expected the pinned {pinned}",
        f"error: model {REPO}: {REPO}@{gone}: revision not found on the hub; check the pinned revision",
        f"error: published.checkpoints.bert-sup: {NO_WEIGHTS}@{'2' * 40}: no model.safetensors or "
        "pytorch_model.bin in the repository",
    ]
    assert result.stdout.rstrip().splitlines()[-1] == (
        f"verdict: NOT READY: 3 of 12 checks failed (sources.korsts_test, model {REPO}, "
        "published.checkpoints.bert-sup)")


def _local_project(tmp_path: Path, world, **changes) -> Params:
    """A project that needs no network: local source files and the tiny model as a local folder."""
    sources = {k: {"url": str(p), "revision": None, "sha256": None} for k, p in world.sources.items()}
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params.update({"model": str(world.model), "model_revisions": {}, "sources": sources, "seeds": [],
                   "variants": {"bert-unsup": {"data": "wiki"}, "bert-sup": {"data": "nli"}},
                   "published": {"enabled": False, "checkpoints": {}}, "compare": []})
    params.update(changes)
    for kind, record in (("wiki", {"sentences": 3000}), ("nli", {"triplets": 900})):
        (tmp_path / "data" / "train" / kind).mkdir(parents=True)
        (tmp_path / "data" / "train" / kind / "manifest.json").write_text(json.dumps(record), encoding="utf-8")
    return Params(params)


def test_a_cpu_only_machine_gives_its_line(world, tmp_path):
    params = _local_project(tmp_path, world, device="cuda")
    checks = run_preflight(params, root=tmp_path, probe=lambda: CPU_ONLY)
    line, errors = verdict(checks)
    assert errors == ["error: device: CPU-only machine: torch 2.13.0+cpu (a CPU-only build) sees no CUDA GPU, "
                      "but params device is cuda (install a CUDA build of torch, check CUDA_VISIBLE_DEVICES, "
                      "or set device: cpu)"]
    assert line.startswith("verdict: NOT READY: 1 of ")
    # the same project on a simulated H100 passes
    line, errors = verdict(run_preflight(params, root=tmp_path, probe=lambda: H100))
    assert errors == [] and line.startswith("verdict: ready")


def test_device_line_names_the_gpu_and_what_it_supports():
    check = check_device(H100, device="cuda", precision="bf16")
    assert check.line() == ("ok    device: NVIDIA H100 80GB HBM3 x1, 79.2 GiB, compute capability 9.0, "
                            "torch 2.13.0+cu128, CUDA 12.8, bf16 yes, fp16 yes; precision bf16")
    old = DeviceInfo(torch="2.13.0+cu128", cuda="12.8", gpus=("Tesla V100",), memory=16 * 2**30,
                     capability=(7, 0), bf16=False, fp16=True)
    assert check_device(old, device="cuda", precision="fp16").status == "ok"
    bad = check_device(old, device="cuda", precision="bf16")
    assert bad.status == "fail" and bad.detail.endswith("precision bf16 is not supported here (set precision: fp16)")


def test_nproc_must_not_exceed_the_visible_gpus():
    assert check_nproc(H100, device="cuda", nproc=1).status == "ok"
    assert check_nproc(H100, device="cuda", nproc=2).line() == \
        "FAIL  nproc: nproc = 2 but 1 GPU(s) visible; expected nproc <= 1"
    assert check_nproc(CPU_ONLY, device="cpu", nproc=2).status == "ok"


def test_disk_estimate_equals_a_hand_computation(world, tmp_path):
    params = _local_project(tmp_path, world, device="cpu")
    weights = (world.model / "model.safetensors").stat().st_size
    raw = sum(p.stat().st_size for p in world.sources.values())
    tokens = (3000 * 1 * (27 * 4 + 8) + 900 * 3 * (27 * 4 + 8)) * 2
    # base x2 (DVC cache; a local folder has no HF cache copy), 2 variants x 1 seed trained x2, packaged x2,
    # one variant's checkpoint (1 finished seed + weights and AdamW's two moments), raw + train text x2 each
    needed = weights * 2 + 2 * weights * 2 + 2 * weights * 2 + 4 * weights + raw * 4 + tokens
    full = SimpleNamespace(free=needed - 1)
    disk = {c.name: c for c in run_preflight(params, root=tmp_path, probe=lambda: CPU_ONLY,
                                             disk_usage=lambda _: full)}["disk"]
    assert disk.status == "fail"
    assert disk.detail.startswith(f"~{estimate.human_bytes(needed)} needed (base models ")
    assert disk.detail.endswith(f"free at least {estimate.human_bytes(1)} more")
    roomy = SimpleNamespace(free=needed)
    disk = {c.name: c for c in run_preflight(params, root=tmp_path, probe=lambda: CPU_ONLY,
                                             disk_usage=lambda _: roomy)}["disk"]
    assert disk.status == "ok"


def test_bench_reports_are_read_as_committed():
    measured = {Path(t.file).name: t for t in estimate.read_bench(ROOT / "reports" / "bench")}
    minilm = measured["train_throughput.minilm.cpu.md"]
    assert (minilm.device, minilm.nonembedding, minilm.train, minilm.encode) == ("cpu", 10_650_000, 29, 305)
    assert minilm.hardware.startswith("AMD EPYC, 2 usable of 2 cores")
    tiny = measured["train_throughput.tiny.cpu.md"]
    assert (tiny.nonembedding, tiny.train, tiny.encode) == (100_000, 1068, 15846)


BERT_BASE = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "vocab_size": 32000,
             "max_position_embeddings": 512, "type_vocab_size": 2}


def test_klue_bert_base_parameters_and_training_time():
    total, nonembedding = estimate.param_counts(BERT_BASE)
    assert (total, nonembedding) == (110_617_344, 85_054_464)  # klue/bert-base: 110.6M parameters
    minilm = next(t for t in estimate.read_bench(ROOT / "reports" / "bench") if "minilm" in t.file)
    train_rate = 29 * 10.65e6 / 85_054_464
    encode_rate = 305 * 10.65e6 / 85_054_464
    evals = 3907 // 100 + 1  # ceil(1M / 256) steps, KorSTS dev every 100 and at the end
    expected = 1_000_000 / train_rate + evals * 3000 / encode_rate
    got = estimate.train_seconds(examples=1_000_000, kind="wiki", epochs=1, seeds=1, batch_size=256,
                                 eval_steps=100, nonembedding=nonembedding, measured=minilm)
    assert got == pytest.approx(expected, rel=1e-12)
    assert estimate.human_seconds(got) == "77.4 h"


def test_time_estimate_prefers_a_gpu_measurement_and_says_when_there_is_none(world, tmp_path):
    params = _local_project(tmp_path, world, device="cuda")
    shutil.copytree(ROOT / "reports" / "bench", tmp_path / "reports" / "bench")
    checks = {c.name: c for c in run_preflight(params, root=tmp_path, probe=lambda: H100)}
    assert checks["time"].detail.endswith("no GPU throughput measured yet in reports/bench/, so these are cpu times")
    (tmp_path / "reports" / "bench" / "train_throughput.base.cuda.md").write_text(
        "# Training and encoding throughput: bert-base on cuda\n\n"
        "- hardware: NVIDIA H100 80GB HBM3; torch 2.13.0; device cuda\n"
        "- model: random-init BERT, 85.05M non-embedding parameters\n\n"
        "| task | loop | sentences/s | tokens/s | peak RSS MiB | MFU |\n|---|---|---:|---:|---:|---:|\n"
        "| training | ours | 4,000 | 1 | 1 | 1 |\n| encoding | ours | 20,000 | 1 | 1 | 1 |\n", encoding="utf-8")
    checks = {c.name: c for c in run_preflight(params, root=tmp_path, probe=lambda: H100)}
    assert checks["time"].detail.startswith("from reports/bench/train_throughput.base.cuda.md: training 4,000 "
                                            "sentences/s, encoding 20,000 for 85.05M non-embedding parameters "
                                            "on NVIDIA H100 80GB HBM3; torch 2.13.0; device cuda")
    assert "no GPU" not in checks["time"].detail


def test_remote_size_head_ranged_get_404_and_local(world, tmp_path):
    data = world.sources["korsts_dev"].read_bytes()
    assert remote_size(f"{world.url}/ok/r/sts-dev.tsv") == len(data)
    world.files.hits.clear()
    assert remote_size(f"{world.url}/nohead/r/sts-dev.tsv") == len(data)
    assert [h[0] for h in world.files.hits] == ["HEAD", "GET"]
    with pytest.raises(UserError) as info:
        remote_size(f"{world.url}/ok/r/missing.tsv")
    assert str(info.value) == f"{world.url}/ok/r/missing.tsv: HTTP 404 not found; check the URL and its pinned revision"
    assert remote_size(world.sources["korsts_dev"].as_uri()) == len(data)
    with pytest.raises(UserError, match="source file not found"):
        remote_size(str(tmp_path / "nope.tsv"))


def test_a_compared_models_sentence_transformers_files_are_checked_as_compare_reads_them(world, tmp_path):
    """Two compared repositories with sentence-transformers files (mean pooling + Normalize):
    params.yaml agreeing with them passes and says the embedding; params.yaml saying cls fails
    before any training, with the compare stage's own line; one declaring weightedmean fails."""
    from pipeline import fakehub
    from pipeline.modeling import write_sentence_transformers_config

    st = tmp_path / "st"
    st.mkdir()
    for name, data in world.model_files.items():
        (st / name).write_bytes(data)
    write_sentence_transformers_config(st, hidden_size=32, pooler="mean", max_len=64)
    modules = json.loads((st / "modules.json").read_text(encoding="utf-8"))
    (st / "modules.json").write_text(json.dumps(modules + [{"idx": 2, "name": "2", "path": "2_Normalize",
                                                            "type": "sentence_transformers.models.Normalize"}]))
    st_files = fakehub.folder_files(st)
    odd = {**st_files, "1_Pooling/config.json": json.dumps({"pooling_mode": "weightedmean"}).encode()}
    repos = {REPO: (COMMIT, world.model_files), "org/agrees": ("a" * 40, st_files),
             "org/contradicts": ("b" * 40, st_files), "org/odd": ("c" * 40, odd)}
    (tmp_path / "project").mkdir()
    root = _project(tmp_path / "project", world, compare=[
        {"id": "org/agrees", "revision": "a" * 40, "normalize": True},
        {"id": "org/contradicts", "revision": "b" * 40, "pooling": "cls"},
        {"id": "org/odd", "revision": "c" * 40}])
    with fakehub.serve(repos) as url:
        result = run_module("pipeline.cli", "preflight", cwd=root, env={**_env(world, tmp_path), "HF_ENDPOINT": url})
    assert result.returncode == 1, result.stdout + result.stderr
    lines = _lines(result.stdout)
    assert lines["compare org/agrees"].startswith("ok    compare org/agrees: org/agrees@" + "a" * 40)
    assert lines["compare org/agrees"].endswith(
        "; embedding mean + Normalize, from params.yaml (its model card), matching the repository's pooling and "
        "Normalize")
    assert lines["compare org/contradicts"] == (
        "FAIL  compare org/contradicts: compare: org/contradicts: pooling 'cls' in params.yaml, but the "
        "repository's 1_Pooling/config.json says 'mean'; leave pooling empty to follow the repository")
    odd_line = lines["compare org/odd"]  # the temporary folder's name is in the middle
    assert odd_line.startswith("FAIL  compare org/odd: compare: org/odd: 1_Pooling/config.json of preflight-st-")
    assert odd_line.endswith(": pooling mode 'weightedmean' is not implemented here; expected one of cls, mean, max")
    assert result.stdout.rstrip().splitlines()[-1].startswith(
        "verdict: NOT READY: 2 of ") and "(compare org/contradicts, compare org/odd)" in result.stdout
