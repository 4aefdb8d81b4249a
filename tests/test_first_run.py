"""The first real run, right the first time: the device is explicit, lines split as the card's reader
split them, token caches are checked against their manifests and shared by variants that agree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.data import build_triplets, read_corpus, read_kornli, text_lines
from pipeline.devices import require_device
from pipeline.errors import UserError
from pipeline.hub import fetch_model
from pipeline.report import blank_lines_note
from pipeline.smoke_data import write_smoke_sources
from pipeline.tiny import build_tiny_model
from pipeline.tokens import TokenColumn
from tests.conftest import run_module

ROOT = Path(__file__).resolve().parents[1]
#: Every separator str.splitlines() breaks at besides "\n" (the card's readlines() split on "\n" only).
OTHER_SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\r"]


# --- device ------------------------------------------------------------------------------

def test_cuda_without_a_gpu_is_one_line_naming_the_opt_in():
    with pytest.raises(UserError) as err:
        require_device("cuda", where="params.yaml", cuda_available=lambda: False)
    message = str(err.value)
    assert "\n" not in message and message.startswith("params.yaml: device = 'cuda'")
    assert "sees no GPU" in message and "device: cpu" in message


def test_cpu_is_only_ever_chosen_explicitly():
    assert require_device("cpu", cuda_available=lambda: True).type == "cpu"
    assert str(require_device("cuda", local_rank=1, cuda_available=lambda: True)) == "cuda:1"


def _stage_project(tmp_path: Path, device: str) -> Path:
    """A project with the real params.yaml (device as given) and generated benchmarks + a trained 'seed'."""
    written = write_smoke_sources(tmp_path / "sources")
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    shutil.copy(written["korsts_test"], raw / "korsts_test.tsv")
    shutil.copy(written["klue_dev"], raw / "klue_dev.json")
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["device"] = device
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("stage, args", [
    ("stages.train", ["--variant", "bert-unsup", "--tokens", "data/tokens/bert-unsup", "--models",
                      "data/models/bert-unsup", "--out", "models/bert-unsup", "--live", "dvclive/bert-unsup",
                      "--resume", "checkpoints/bert-unsup"]),
    ("stages.evaluate", ["--models", "models/bert-unsup", "--raw", "data/raw", "--metrics", "metrics/m.json",
                         "--predictions", "eval/bert-unsup"]),
    ("stages.baseline", ["--models", "data/models", "--raw", "data/raw", "--metrics", "metrics/baseline.json",
                         "--predictions", "eval/baseline"]),
    ("stages.published", ["--raw", "data/raw", "--metrics", "metrics/published.json", "--predictions",
                          "eval/published"]),
])
def test_stages_that_load_a_model_stop_at_once_without_a_gpu(tmp_path, stage, args):
    """No GPU visible (hidden, so that this holds on a GPU machine too): with the default `device: cuda` each
    stage stops in one line, writing nothing (no model folder, token cache or checkpoint even exists here:
    the check comes first)."""
    root = _stage_project(tmp_path, "cuda")
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    result = run_module(stage, *args, cwd=root, timeout=300, env={"CUDA_VISIBLE_DEVICES": ""})
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: params.yaml: device = 'cuda'"), lines
    assert "Traceback" not in result.stderr
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before


# --- line splitting ------------------------------------------------------------------------

def test_text_lines_split_at_newline_only():
    text = "".join(f"문장{i}{sep}계속\n" for i, sep in enumerate(OTHER_SEPARATORS))
    lines = text_lines(text)
    assert len(lines) == len(OTHER_SEPARATORS) and len(text.splitlines()) > 2 * len(OTHER_SEPARATORS) - 1
    assert [line.split("계속")[0][-1] for line in lines] == OTHER_SEPARATORS
    assert text_lines("a\nb") == ["a", "b"] and text_lines("a\n\nb\n") == ["a", "", "b"] and text_lines("") == []


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tok")
    written = write_smoke_sources(root / "sources")
    model = build_tiny_model(written["corpus"], root / "tiny", arch="bert", seed=0)
    fetch_model(str(model), None, root / "models" / "bert-unsup")  # a fetch_model output, manifest aside
    record = {"model": "tiny", **json.loads(json.dumps(fetch_model(str(model), None, root / "scratch")))}
    (root / "models" / "bert-unsup" / "manifest.json").write_text(json.dumps(record), encoding="utf-8")
    shutil.copytree(root / "models" / "bert-unsup", root / "models" / "bert-unsup-simcse")
    return root


def _tokenize_project(root: Path, tmp_path: Path, corpus_lines: list[str], triplets: list[str]) -> Path:
    """data/train/{wiki,nli} as the corpus and triplets stages write them, plus KorSTS dev and params."""
    project = tmp_path / "p"
    wiki, nli, raw = project / "data/train/wiki", project / "data/train/nli", project / "data/raw"
    for folder in (wiki, nli, raw):
        folder.mkdir(parents=True)
    (wiki / "sentences.txt").write_text("\n".join(corpus_lines) + "\n", encoding="utf-8")
    (wiki / "manifest.json").write_text(json.dumps({"kind": "wiki", "sentences": len(corpus_lines)}))
    (nli / "triplets.tsv").write_text("\n".join(triplets) + "\n", encoding="utf-8")
    (nli / "manifest.json").write_text(json.dumps({"kind": "nli", "triplets": len(triplets)}))
    shutil.copy(root / "sources" / "sts-dev.tsv", raw / "korsts_dev.tsv")
    shutil.copytree(root / "models", project / "data" / "models")
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params.update(model="tiny", variants={"bert-unsup": {"data": "wiki"},
                                          "bert-unsup-simcse": {"data": "wiki", "recipe": "simcse"},
                                          "bert-sup": {"data": "nli"}})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return project


def _tokenize(project: Path, variant: str, models: str = "bert-unsup"):
    return run_module("stages.tokenize_data", "--variant", variant, "--train", "data/train", "--models",
                      f"data/models/{models}", "--raw", "data/raw", "--out", f"data/tokens/{variant}",
                      "--reuse", ".cache/tokens", cwd=project, timeout=300)


def test_a_sentence_holding_a_line_separator_stays_one_training_row(tiny_model, tmp_path):
    corpus = [f"서울에서{sep}사람을 보았다." for sep in OTHER_SEPARATORS] + ["부산에서 기차를 보았다."]
    triplets = [f"전제{sep}문장\t함의 문장\t모순 문장" for sep in OTHER_SEPARATORS]
    # (a lone \r never reaches these files from the corpus reader, which splits there as the card did;
    # a KorNLI sentence can carry one, and it must not be turned into a line break on reading)
    project = _tokenize_project(tiny_model, tmp_path, corpus, triplets)
    for variant in ("bert-unsup", "bert-sup"):
        result = _tokenize(project, variant)
        assert result.returncode == 0, result.stderr[-2000:]
    assert len(TokenColumn(project / "data/tokens/bert-unsup", "sent")) == len(corpus)
    for column in ("anchor", "positive", "negative"):
        assert len(TokenColumn(project / "data/tokens/bert-sup", column)) == len(triplets)


def test_corpus_lines_are_the_card_readers_lines(tmp_path):
    """The card read the corpus with text-mode readlines(): universal newlines, nothing else."""
    corpus = tmp_path / "corpus.txt"
    text = "".join(f"문장{i}{sep}계속\n" for i, sep in enumerate(OTHER_SEPARATORS)) + "\n  \n끝 문장\r\n마지막"
    corpus.write_bytes(text.encode("utf-8"))
    with open(corpus, encoding="utf-8") as handle:
        card = [line.strip() for line in handle.readlines()]
    read = read_corpus(corpus)
    assert read.sentences == [line for line in card if line] and read.blank_lines == card.count("")
    assert len(read.sentences) == len(OTHER_SEPARATORS) + 3  # only the lone \r split a line
    assert read.blank_lines == 2


def test_triplet_builder_keeps_a_separator_inside_its_sentence(tmp_path):
    nli = tmp_path / "nli.tsv"
    nli.write_text("sentence1\tsentence2\tgold_label\n전제\x85문장\t함의\tentailment\n전제\x85문장\t모순\tcontradiction\n",
                   encoding="utf-8")
    triplets = build_triplets(read_kornli(nli))
    assert (triplets.anchor, triplets.positive, triplets.negative) == (["전제\x85문장"], ["함의"], ["모순"])


def test_tokenize_checks_row_counts_against_the_manifest(tiny_model, tmp_path):
    project = _tokenize_project(tiny_model, tmp_path, ["하나", "둘", "셋"], ["a\tb\tc"])
    (project / "data/train/wiki/manifest.json").write_text(json.dumps({"kind": "wiki", "sentences": 4}))
    result = _tokenize(project, "bert-unsup")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "sentences.txt: 3 lines, its manifest.json says 4 sentences" in lines[0]
    assert not (project / "data/tokens/bert-unsup").exists() and not (project / ".cache").exists()


def test_variants_that_agree_share_one_tokenization(tiny_model, tmp_path):
    corpus = [f"{city}에서 {n}번째 사람을 보았다." for city in ("서울", "부산", "대구") for n in range(20)]
    project = _tokenize_project(tiny_model, tmp_path, corpus, ["a\tb\tc"])
    first = _tokenize(project, "bert-unsup")
    second = _tokenize(project, "bert-unsup-simcse", models="bert-unsup-simcse")
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second.stderr[-2000:]
    assert "identical cache found" not in first.stdout and "identical cache found" in second.stdout
    a, b = project / "data/tokens/bert-unsup", project / "data/tokens/bert-unsup-simcse"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for path in a.iterdir():
        assert path.read_bytes() == (b / path.name).read_bytes(), path.name
    assert len(TokenColumn(b, "sent")) == len(corpus)
    # what determines a cache changes its key: another max_len tokenizes again, and truncates
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    params["variants"]["bert-unsup-simcse"]["max_len"] = 8
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    third = _tokenize(project, "bert-unsup-simcse", models="bert-unsup-simcse")
    assert third.returncode == 0 and "identical cache found" not in third.stdout, third.stderr[-2000:]
    assert np.asarray(TokenColumn(b, "sent").lengths()).max() == 8
    assert len(list((project / ".cache/tokens").iterdir())) == 2


# --- blank lines --------------------------------------------------------------------------

def test_blank_lines_note_says_the_card_trained_on_them():
    assert blank_lines_note(1000, 0) == ""
    note = blank_lines_note(999_990, 10)
    assert "10 blank lines of the corpus skipped" in note and "trained on 1000000 rows, 10 of them an empty" in note
