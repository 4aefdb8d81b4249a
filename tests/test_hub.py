"""pipeline/hub.py and the model-folder helpers of pipeline/modeling.py, offline: a local folder
is copied and hashed, pickle weights are converted (fetch_model) or read (load_encoder, through
transformers' own loader) with the weights-only loader, a pickle that runs code is refused without
running it, hub ids map to folder names."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from pipeline.errors import UserError
from pipeline.hub import fetch_model, is_commit, model_slug
from pipeline.modeling import check_model_folder, convert_pickle_weights, load_encoder
from pipeline.tiny import build_tiny_model

SUBJECTS = ["서울", "부산", "대구", "인천", "광주", "대전", "울산", "세종", "수원", "제주"]
PREDICATES = ["날씨가 맑다", "비가 내렸다", "축제가 열렸다", "도로가 막혔다", "시장이 붐볐다",
              "공원이 조용했다", "기차가 늦었다", "눈이 많이 왔다", "바람이 강했다", "전시가 시작됐다"]
SENTENCES = ["오늘 서울의 날씨가 맑다.", "부산에서 축제가 열렸다고 한다."]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny random BERT (safetensors) built from 200 generated Korean sentences."""
    base = tmp_path_factory.mktemp("tiny")
    corpus = base / "corpus.txt"
    lines = [f"{year}년 {SUBJECTS[i % 10]}에서는 {PREDICATES[(i // 10) % 10]}."
             for i, year in zip(range(200), range(1900, 2100))]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return build_tiny_model(corpus, base / "model", vocab_size=300, hidden=32, layers=1, heads=2,
                            intermediate=64, max_positions=64)


def _embed(folder: Path) -> torch.Tensor:
    encoder, tokenizer = load_encoder(folder, pooler="mean")
    encoder.eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        return encoder.embed(batch["input_ids"], batch["attention_mask"])  # (2, 32)


def _side_files(src: Path, dest: Path, skip: tuple[str, ...] = ("model.safetensors",)) -> Path:
    dest.mkdir(parents=True)
    for item in src.iterdir():
        if item.name not in skip:
            shutil.copyfile(item, dest / item.name)
    return dest


def test_fetch_model_copies_a_local_folder(tiny, tmp_path):
    record = fetch_model(str(tiny), None, tmp_path / "out")
    names = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert sorted(p.name for p in tiny.iterdir()) == names  # what build_tiny_model writes
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names
    assert record == {"source": str(tiny), "kind": "local", "revision": None, "commit": None, "pinned": True,
                      "files": {name: _digest(tiny / name) for name in names}}
    for name in names:
        assert (tmp_path / "out" / name).read_bytes() == (tiny / name).read_bytes()


def test_fetch_model_ignores_files_outside_the_model(tiny, tmp_path):
    src = _side_files(tiny, tmp_path / "src", skip=())
    (src / "training_args.bin").write_bytes(b"not copied")
    (src / "notes.txt").write_text("not copied", encoding="utf-8")
    record = fetch_model(str(src), None, tmp_path / "out")
    assert sorted(record["files"]) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


@pytest.mark.parametrize("remove, expected", [
    (("model.safetensors",), "no weights (model.safetensors or pytorch_model.bin)"),
    (("config.json",), "no config.json"),
])
def test_fetch_model_incomplete_folder(tiny, tmp_path, remove, expected):
    src = _side_files(tiny, tmp_path / "src", skip=remove)
    with pytest.raises(UserError) as info:
        fetch_model(str(src), None, tmp_path / "out")
    assert str(info.value).startswith(f"{src}: {expected}")
    with pytest.raises(UserError, match="expected a Hugging Face model folder"):
        check_model_folder(src)


def test_fetch_model_not_a_folder_nor_a_hub_id(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(UserError) as info:
        fetch_model(missing, None, tmp_path / "out")
    assert str(info.value) == f"model {missing!r}: not a local folder and not a hub id (expected org/name)"
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def pickle_only(tiny, tmp_path_factory) -> Path:
    """The tiny model with its weights as a plain ``pytorch_model.bin`` state dict, no safetensors."""
    from safetensors.torch import load_file

    folder = _side_files(tiny, tmp_path_factory.mktemp("pickle") / "model")
    torch.save(load_file(tiny / "model.safetensors"), folder / "pytorch_model.bin")
    return folder


def test_pickle_weights_are_converted(tiny, pickle_only, tmp_path):
    from safetensors.torch import load_file

    record = fetch_model(str(pickle_only), None, tmp_path / "out")
    assert sorted(record["files"]) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert not (tmp_path / "out" / "pytorch_model.bin").exists()
    assert record["files"]["model.safetensors"] == _digest(tmp_path / "out" / "model.safetensors")
    original = load_file(tiny / "model.safetensors")
    converted = load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(converted) == sorted(original)
    for key, value in original.items():
        assert torch.equal(converted[key], value), key


def test_load_encoder_same_outputs_from_pickle_weights(tiny, pickle_only, tmp_path):
    reference = _embed(tiny)
    assert reference.shape == (2, 32)
    assert torch.equal(_embed(pickle_only), reference)  # read by transformers' weights-only loader
    fetch_model(str(pickle_only), None, tmp_path / "out")
    assert torch.equal(_embed(tmp_path / "out"), reference)
    assert sorted(p.name for p in pickle_only.iterdir()) == ["config.json", "pytorch_model.bin", "tokenizer.json",
                                                              "tokenizer_config.json"]  # source left alone


def test_load_encoder_reads_pickle_weights_in_place(pickle_only, tmp_path, monkeypatch):
    """No model-sized converted copy: nothing is written to the temp folder, the source is left alone."""
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = {p.name: _digest(p) for p in pickle_only.iterdir()}
    assert _embed(pickle_only).shape == (2, 32)
    assert list(scratch.iterdir()) == []
    assert {p.name: _digest(p) for p in pickle_only.iterdir()} == before


def test_load_encoder_upcasts_half_pickle_weights(tiny, tmp_path):
    """An fp16 ``pytorch_model.bin`` loads as fp32 parameters equal to the fp16 values (the card's upcast)."""
    import json

    from safetensors.torch import load_file

    folder = _side_files(tiny, tmp_path / "half")
    half = {k: v.half() for k, v in load_file(tiny / "model.safetensors").items()}
    torch.save(half, folder / "pytorch_model.bin")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["dtype"] = "float16"  # as save_pretrained writes it for a half model: transformers 5 would keep fp16
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    encoder, _ = load_encoder(folder)
    params = dict(encoder.backbone.named_parameters())
    assert {p.dtype for p in params.values()} == {torch.float32}
    for key, value in half.items():
        if key in params:
            assert torch.equal(params[key], value.float()), key


def test_load_encoder_pickle_missing_a_weight_is_refused(tiny, tmp_path):
    from safetensors.torch import load_file

    folder = _side_files(tiny, tmp_path / "partial")
    state = load_file(tiny / "model.safetensors")
    del state["encoder.layer.0.output.dense.weight"]
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(UserError) as info:
        load_encoder(folder)
    assert str(info.value) == (f"{folder}: weight 'encoder.layer.0.output.dense.weight' is missing from the "
                               "checkpoint; expected every bert encoder weight")


class _RunsCode:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class _Plain:
    """An ordinary class instance: not a tensor, not allow-listed."""

    def __init__(self):
        self.value = 1


@pytest.mark.parametrize("payload", ["os.system", "instance"])
def test_pickle_that_runs_code_is_refused(tiny, tmp_path, monkeypatch, payload):
    import tempfile

    scratch = tmp_path / "scratch"  # where load_encoder would convert
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    marker = tmp_path / "pwned"
    folder = _side_files(tiny, tmp_path / "model")
    weights = folder / "pytorch_model.bin"
    obj = _RunsCode(marker) if payload == "os.system" else _Plain()
    torch.save({"embeddings.word_embeddings.weight": torch.zeros(2, 2), "x": obj}, weights)

    with pytest.raises(UserError) as info:
        convert_pickle_weights(weights, tmp_path / "model.safetensors")
    message = str(info.value)
    assert message.startswith(f"{weights}: not loadable with torch's weights_only=True loader")
    assert "refusing a full unpickle" in message
    assert not (tmp_path / "model.safetensors").exists()
    with pytest.raises(UserError, match="weights_only"):
        fetch_model(str(folder), None, tmp_path / "out")
    with pytest.raises(UserError) as info:
        load_encoder(folder)
    message = str(info.value)
    assert "\n" not in message
    global_name = "posix.system" if payload == "os.system" else f"{__name__}._Plain"
    assert message.startswith(f"{weights}: not loadable with torch's weights_only=True loader (")
    assert f"GLOBAL {global_name} " in message  # torch's own words name the refused global
    assert message.endswith("); refusing a full unpickle, expected a mapping of weight names to tensors")
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert list(scratch.iterdir()) == []
    assert not marker.exists()

    if payload == "os.system":  # control: the payload is live, a full unpickle runs it
        torch.load(weights, weights_only=False)
        assert marker.exists()


@pytest.mark.parametrize("state", [[torch.zeros(2)], {"w": torch.zeros(2), "step": 3}], ids=["list", "int-value"])
def test_pickle_without_a_tensor_mapping_is_refused(tiny, tmp_path, state):
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError) as info:
        convert_pickle_weights(tmp_path / "pytorch_model.bin", tmp_path / "model.safetensors")
    assert str(info.value) == f"{tmp_path / 'pytorch_model.bin'}: expected a mapping of tensor names to tensors"
    assert not (tmp_path / "model.safetensors").exists()
    folder = _side_files(tiny, tmp_path / "model")
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(UserError) as info:
        load_encoder(folder)
    if isinstance(state, dict):  # a mapping, but not of the encoder's weights: check_loading_info says so
        assert str(info.value) == (f"{folder}: weight 'embeddings.LayerNorm.bias' is missing from the checkpoint "
                                   "(and 20 more); expected every bert encoder weight")
    else:
        assert str(info.value) == (f"{folder / 'pytorch_model.bin'}: cannot load the model weights (TypeError); "
                                   "expected a mapping of weight names to tensors")


@pytest.mark.parametrize("model, slug", [
    ("klue/bert-base", "klue--bert-base"),
    ("klue/roberta-base", "klue--roberta-base"),
    ("snumin44/simcse-ko-bert-supervised", "snumin44--simcse-ko-bert-supervised"),
    ("org/name.v2_x", "org--name.v2_x"),
    ("/models/my-bert", "local--my-bert"),       # not a hub id: an (absent) local path
    ("bert-base", "local--bert-base"),           # no org
    ("a/b/c", "local--c"),
])
def test_model_slug(model, slug):
    assert model_slug(model) == slug


def test_model_slug_local_folder_wins_over_hub_id(tmp_path, monkeypatch):
    (tmp_path / "klue" / "bert-base").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert model_slug("klue/bert-base") == "local--bert-base"
    assert model_slug(str(tmp_path / "klue" / "bert-base")) == "local--bert-base"


@pytest.mark.parametrize("revision, expected", [
    ("0df0fe7d496eb61b092e022e238c2230b29f1cbc", True),
    ("3efd98708a40ff49251fddde35453f8fbb11f536", True),
    ("0DF0FE7D496EB61B092E022E238C2230B29F1CBC", False),  # the hub's commit ids are lower-case
    ("0df0fe7d496eb61b092e022e238c2230b29f1cb", False),   # 39 characters
    ("0df0fe7d496eb61b092e022e238c2230b29f1cbc0", False),  # 41
    ("0df0fe7", False),                                   # a short hash is not a pin
    ("main", False),
    ("v1.0.0", False),
    ("", False),
    (None, False),
])
def test_is_commit(revision, expected):
    assert is_commit(revision) is expected


def _connect_error() -> Exception:
    import httpx2  # huggingface_hub's HTTP client

    return httpx2.ConnectError("[Errno -2] Name or service not known")


def _offline() -> Exception:
    from huggingface_hub.errors import OfflineModeIsEnabled

    return OfflineModeIsEnabled("offline")


@pytest.mark.parametrize("error, expected", [
    (_connect_error, "org/m@main: cannot reach the Hugging Face hub after 1 attempts (ConnectError: [Errno -2] "
                     "Name or service not known); check the network or proxy, retry later, or pass a local folder"),
    (_offline, "org/m@main: HF_HUB_OFFLINE is set; unset it to reach the hub, or pass a local folder"),
])
def test_hub_unreachable_is_one_line(error, expected):
    """The hub client's network errors (httpx2's, not OSErrors) and offline mode end in one line."""
    from pipeline.hub import _hub_call

    def call():
        raise error()

    with pytest.raises(UserError) as info:
        _hub_call(call, "org/m@main", retries=0)
    assert str(info.value) == expected
