"""The real compare list's shapes through the hub path: pickle-only weights (jhgan, snunlp at their pins)
and an XLM-R-shaped encoder (multilingual-e5, bge-m3: sentencepiece Unigram tokenizer.json, one token
type), as the smoke run serves them (pipeline.smoke.SMOKE_HUB), fetched with pipeline.hub.fetch_model
from the loopback hub and scored with the evaluation code; the numbers are checked against a
hand computation with transformers, numpy and scipy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from pipeline import fakehub
from pipeline.evaluate import all_protocol_sets, evaluate_folders
from pipeline.hub import fetch_model
from pipeline.hubeval import embedding_for, read_compare
from pipeline.params import BootstrapConfig, Params
from pipeline.smoke import SMOKE_HUB, write_smoke_hub
from pipeline.smoke_data import write_smoke_sources

ROOT = Path(__file__).resolve().parents[1]
PICKLE = "smoke-hub/tiny-pickle-mean"
XLMR = "smoke-hub/tiny-xlmr-e5"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The smoke sources and the SMOKE_HUB repositories, as the smoke project has them."""
    root = tmp_path_factory.mktemp("shapes")
    sources = write_smoke_sources(root / "sources")
    write_smoke_hub(sources["corpus"], root / "hub")
    return {"sources": sources, "hub": root / "hub"}


@pytest.fixture
def fetched(served, tmp_path, monkeypatch):
    """fetch(repo) -> (record, folder, requests seen): fetch_model from the loopback hub at its commit."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    faults = fakehub.Faults()
    repos = {repo: (spec.commit, fakehub.folder_files(served["hub"] / repo)) for repo, spec in SMOKE_HUB.items()}

    def fetch(repo: str):
        folder = tmp_path / repo.replace("/", "--")
        with fakehub.serve(repos, faults) as url, fakehub.pointed_at(url):
            record = fetch_model(repo, SMOKE_HUB[repo].commit, folder, st_files=True)
        return record, folder, faults.seen

    return fetch


def _smoke_entry(repo: str):
    """The repo's `compare` entry as smoke/params.yaml declares it (validated by read_compare)."""
    import yaml

    raw = yaml.safe_load((ROOT / "smoke" / "params.yaml").read_text(encoding="utf-8"))
    return next(e for e in read_compare(Params(raw, source="smoke/params.yaml")) if e.id == repo)


def _by_hand(served_folder: Path, sts, *, prefix: str, normalize: bool, max_len: int) -> float:
    """Cosine Spearman x 100 of mean pooling, computed independently: transformers' own loading of the
    served folder (pickle or safetensors), numpy pooling, scipy's Spearman."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(served_folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(served_folder)
    sentences = list(dict.fromkeys(sts.sentence1 + sts.sentence2))
    rows = {}
    with torch.no_grad():
        for start in range(0, len(sentences), 64):
            chunk = sentences[start:start + 64]
            batch = tokenizer([prefix + s for s in chunk], padding=True, truncation=True, max_length=max_len,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state.numpy()          # (B, T, H)
            mask = batch["attention_mask"].numpy()[..., None]           # (B, T, 1)
            pooled = (hidden * mask).sum(1) / mask.sum(1)               # (B, H)
            if normalize:
                pooled = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
            rows.update(zip(chunk, pooled))
    e1, e2 = np.stack([rows[s] for s in sts.sentence1]), np.stack([rows[s] for s in sts.sentence2])
    cosine = (e1 * e2).sum(1) / (np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1))
    return 100 * spearmanr(cosine, sts.scores).statistic


def _evaluate(repo: str, folder: Path, sources: dict) -> tuple[dict, object]:
    embedding = embedding_for(_smoke_entry(repo), folder)
    paths = {"korsts_test": sources["korsts_test"]}  # KorSTS test alone: the encoding is the point
    metrics = evaluate_folders([folder], paths, protocol="clean", max_len=64, batch_size=64,
                               bootstrap=BootstrapConfig(resamples=10), pooler=embedding.pooling,
                               normalize=embedding.normalize, prefix=embedding.prefix)
    return metrics, embedding


def test_pickle_only_weights_through_the_hub_end_to_end(served, fetched):
    from safetensors.torch import load_file

    served_folder = served["hub"] / PICKLE
    assert sorted(p.name for p in served_folder.iterdir() if p.is_file()) == [
        "config.json", "config_sentence_transformers.json", "modules.json", "pytorch_model.bin",
        "sentence_bert_config.json", "tokenizer.json", "tokenizer_config.json"]  # no safetensors served
    record, folder, seen = fetched(PICKLE)
    assert seen["GET resolve pytorch_model.bin"] == 1 and seen["GET resolve model.safetensors"] == 0
    assert record["commit"] == SMOKE_HUB[PICKLE].commit and record["pinned"] is True
    assert "pytorch_model.bin" not in record["files"] and not (folder / "pytorch_model.bin").exists()
    original = torch.load(served_folder / "pytorch_model.bin", weights_only=True)
    converted = load_file(folder / "model.safetensors")
    assert sorted(converted) == sorted(original)
    assert all(torch.equal(converted[k], original[k]) for k in original)

    metrics, embedding = _evaluate(PICKLE, folder, served["sources"])
    assert (embedding.pooling, embedding.normalize, embedding.prefix) == ("mean", False, "")
    assert embedding.origin == "params.yaml (its model card), matching the repository's pooling and Normalize"
    sts = all_protocol_sets({"korsts_test": served["sources"]["korsts_test"]})["clean"]["korsts_test"]
    got = metrics["by_protocol"]["clean"]["korsts_test"]["cosine_spearman"]
    assert got == pytest.approx(_by_hand(served_folder, sts, prefix="", normalize=False, max_len=64), abs=1e-3)


def test_xlmr_shaped_encoder_through_the_hub_end_to_end(served, fetched):
    from transformers import AutoTokenizer

    record, folder, seen = fetched(XLMR)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert (config["model_type"], config["type_vocab_size"]) == ("xlm-roberta", 1)
    tokenizer_json = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    assert tokenizer_json["model"]["type"] == "Unigram"
    assert tokenizer_json["pre_tokenizer"]["type"] == "Metaspace"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    line = served["sources"]["corpus"].read_text(encoding="utf-8").splitlines()[0]
    encoded = tokenizer("query: " + line)  # every character of the corpus (and ASCII) is in the vocabulary
    assert "token_type_ids" not in encoded  # e5 / bge-m3: the model gets ids and mask only
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[0] == "<s>" and tokens[-1] == "</s>" and "<unk>" not in tokens
    assert tokens[1].startswith("\u2581")  # sentencepiece's word-boundary mark
    assert record["files"]["tokenizer.json"] and seen["GET resolve tokenizer.json"] == 1
    assert sorted(record["files"]) == sorted(
        p.relative_to(served["hub"] / XLMR).as_posix() for p in (served["hub"] / XLMR).rglob("*") if p.is_file())

    metrics, embedding = _evaluate(XLMR, folder, served["sources"])
    assert (embedding.pooling, embedding.normalize, embedding.prefix) == ("mean", True, "query: ")
    sts = all_protocol_sets({"korsts_test": served["sources"]["korsts_test"]})["clean"]["korsts_test"]
    got = metrics["by_protocol"]["clean"]["korsts_test"]["cosine_spearman"]
    assert got == pytest.approx(_by_hand(served["hub"] / XLMR, sts, prefix="query: ", normalize=True, max_len=64),
                                abs=1e-3)
    # the prefix reached the encoder: without it the numbers differ
    plain = evaluate_folders([folder], {"korsts_test": served["sources"]["korsts_test"]}, protocol="clean",
                             max_len=64, batch_size=64, bootstrap=BootstrapConfig(resamples=10), pooler="mean",
                             normalize=True)
    assert plain["by_protocol"]["clean"]["korsts_test"] != metrics["by_protocol"]["clean"]["korsts_test"]


def test_xlmr_tokenizer_is_the_same_bytes_under_any_hash_seed(served, tmp_path):
    """The smoke project's sources are compared byte for byte between runs (tests/test_pipeline_e2e.py): the
    Unigram vocabulary is built in Python with sorted ties, unlike the tokenizers trainer, whose scores
    changed from process to process."""
    import hashlib
    import os
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from pipeline.tiny import build_tiny_model; "
            "build_tiny_model(Path(sys.argv[1]), Path(sys.argv[2]), arch='xlm-roberta', vocab_size=1500, hidden=32, "
            "heads=2, intermediate=64)")
    digests = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed-{seed}"
        subprocess.run([sys.executable, "-c", code, str(served["sources"]["corpus"]), str(out)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, timeout=300)
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())})
    assert digests[0] == digests[1] and "tokenizer.json" in digests[0]
    served_tokenizer = (served["hub"] / XLMR / "tokenizer.json").read_bytes()
    assert digests[0]["tokenizer.json"] == hashlib.sha256(served_tokenizer).hexdigest()
