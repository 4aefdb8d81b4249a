"""The `compare` list: validation, each model's embedding (its card vs its repository's files), the
input prefix, and the stage against a loopback hub (the full section is checked on the smoke run in
tests/test_pipeline_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import fakehub
from pipeline.errors import UserError
from pipeline.hubeval import Encoder, embedding_for, read_compare
from pipeline.params import Params
from tests.conftest import run_module

ROOT = Path(__file__).resolve().parents[1]


def params_with(compare) -> Params:
    return Params({"compare": compare}, source="params.yaml")


def test_the_committed_list_is_valid_and_pinned_where_a_commit_is_known():
    entries = read_compare(Params.load(ROOT / "params.yaml"))
    ids = [e.id for e in entries]
    assert "intfloat/multilingual-e5-base" in ids and len(ids) == len(set(ids))
    e5 = next(e for e in entries if e.id == "intfloat/multilingual-e5-base")
    assert (e5.pooling, e5.normalize, e5.prefix) == ("mean", True, "query: ")
    assert all(len(e.revision) == 40 for e in entries if e.id != "BM-K/KoSimCSE-bert")


@pytest.mark.parametrize("compare, message", [
    ({"id": "a/b"}, "params.yaml: compare = {'id': 'a/b'}: expected a list of {id, revision, ...} entries, or []"),
    ([{"id": "not a hub id"}], "params.yaml: compare[0] = {'id': 'not a hub id'}: expected a mapping with id: "
                               "<org>/<name> (a hub model)"),
    ([{"id": "a/b", "pooler": "cls"}], "params.yaml: compare[0]: unknown key(s) pooler; allowed: id, revision, "
                                       "pooling, normalize, prefix, sts_train"),
    ([{"id": "a/b", "pooling": "sum"}], "params.yaml: compare[0].pooling = 'sum': expected one of cls, mean, max, "
                                        "or empty (as the repository's sentence-transformers config says)"),
    ([{"id": "a/b", "normalize": "yes"}], "params.yaml: compare[0].normalize = 'yes': expected true, false or "
                                          "empty (as the repository's modules.json says)"),
    ([{"id": "a/b", "prefix": 3}], "params.yaml: compare[0].prefix = 3: expected text"),
    ([{"id": "a/b"}, {"id": "a/b"}], "params.yaml: compare[1]: a/b is listed twice"),
])
def test_a_bad_entry_is_one_line_naming_it(compare, message):
    with pytest.raises(UserError) as exc:
        read_compare(params_with(compare))
    assert str(exc.value) == message


def test_empty_turns_the_comparison_off():
    assert read_compare(params_with([])) == [] == read_compare(params_with(None))


def _repo(folder: Path, pooling: dict | None, normalize: bool | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if pooling is not None:
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
    if normalize is not None:
        modules = [{"type": "sentence_transformers.models.Transformer"}, {"type": "sentence_transformers.models.Pooling"}]
        modules += [{"type": "sentence_transformers.models.Normalize"}] if normalize else []
        (folder / "modules.json").write_text(json.dumps(modules), encoding="utf-8")
    return folder


def test_the_embedding_follows_the_repository_or_the_card_and_refuses_a_contradiction(tmp_path):
    st = _repo(tmp_path / "st", {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, True)
    bare = _repo(tmp_path / "bare", None, None)
    follow = embedding_for(Encoder("o/st", ""), st)
    assert (follow.pooling, follow.normalize, follow.origin) == (
        "mean", True, "the repository's sentence-transformers files (pooling, Normalize)")
    agree = embedding_for(Encoder("o/st", "", pooling="mean", normalize=True), st)
    assert (agree.pooling, agree.normalize) == ("mean", True) and agree.origin.startswith("params.yaml")
    card = embedding_for(Encoder("o/bare", "", pooling="cls", prefix="query: "), bare)
    assert (card.pooling, card.normalize, card.prefix) == ("cls", False, "query: ")
    assert card.origin == "params.yaml (its model card); the repository has no sentence-transformers files"
    errors = {
        "pooling": (Encoder("o/st", "", pooling="cls"), st),
        "normalize": (Encoder("o/st", "", normalize=False), st),
        "missing": (Encoder("o/bare", ""), bare),
        "odd mode": (Encoder("o/odd", ""), _repo(tmp_path / "odd", {"pooling_mode_lasttoken": True}, None)),
    }
    messages = {}
    for name, (entry, folder) in errors.items():
        with pytest.raises(UserError) as exc:
            embedding_for(entry, folder)
        messages[name] = str(exc.value)
    assert messages == {
        "pooling": "compare: o/st: pooling 'cls' in params.yaml, but the repository's 1_Pooling/config.json says "
                   "'mean'; leave pooling empty to follow the repository",
        "normalize": "compare: o/st: normalize false in params.yaml, but the repository's modules.json says true; "
                     "leave normalize empty to follow it",
        "missing": "compare: o/bare: the repository has no sentence-transformers pooling config "
                   "(1_Pooling/config.json); set pooling (cls, mean or max) as its model card defines it",
        "odd mode": "compare: o/odd: 1_Pooling/config.json of odd: pooling mode 'lasttoken' is not implemented "
                    "here; expected one of cls, mean, max",
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    from pipeline.smoke_data import write_smoke_sources
    from pipeline.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("compare")
    sources = write_smoke_sources(root / "sources")
    model = build_tiny_model(sources["corpus"], root / "model", vocab_size=1500, hidden=32, heads=2,
                             intermediate=64)
    return {"root": root, "sources": sources, "model": model}


def test_the_prefix_is_put_before_every_sentence(tiny):
    """Scores with a prefix are those of the prefixed sentences scored plainly, and differ from none."""
    from pipeline.data import StsSet
    from pipeline.evaluate import score_folder

    pairs = [("고양이가 잔다", "고양이가 자고 있다"), ("비가 온다", "해가 뜬다"), ("밥을 먹었다", "식사를 했다")]
    plain = StsSet("x", [a for a, _ in pairs], [b for _, b in pairs], np.array([4.0, 0.5, 4.5]))
    prefixed = StsSet("x", ["query: " + a for a, _ in pairs], ["query: " + b for _, b in pairs], plain.scores)
    kw = dict(max_len=32, batch_size=8, pooler="mean", normalize=False)
    with_prefix = score_folder(tiny["model"], {"card": {"x": plain}}, prefix="query: ", **kw)["card"]["x"]
    by_hand = score_folder(tiny["model"], {"card": {"x": prefixed}}, **kw)["card"]["x"]
    without = score_folder(tiny["model"], {"card": {"x": plain}}, **kw)["card"]["x"]
    for sim in with_prefix:
        np.testing.assert_array_equal(with_prefix[sim], by_hand[sim])
    assert np.abs(with_prefix["cosine"] - without["cosine"]).max() > 1e-4


def _compare_project(tiny, root: Path, compare: list[dict]) -> Path:
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "korsts_test.tsv").write_bytes(tiny["sources"]["korsts_test"].read_bytes())
    (raw / "klue_dev.json").write_bytes(tiny["sources"]["klue_dev"].read_bytes())
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params.update(device="cpu", compare=compare)
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return root


def test_a_failing_model_is_recorded_and_the_others_are_scored_as_without_it(tiny, tmp_path):
    """Among good models, one whose repository contradicts params.yaml and one that does not exist:
    the stage succeeds, names both with their reasons, and scores the good ones exactly as a run
    without the bad ones does."""
    from pipeline.modeling import write_sentence_transformers_config

    st_model = tmp_path / "st-model"
    st_model.mkdir()
    for path in tiny["model"].iterdir():
        (st_model / path.name).write_bytes(path.read_bytes())
    write_sentence_transformers_config(st_model, hidden_size=32, pooler="mean", max_len=64)
    served = fakehub.folder_files(st_model)
    repos = {"org/st-model": ("a" * 40, served), "org/good": ("b" * 40, served),
             "org/plain": ("c" * 40, fakehub.folder_files(tiny["model"]))}
    good = [{"id": "org/good", "revision": "b" * 40}, {"id": "org/plain", "revision": "c" * 40, "pooling": "max"}]
    bad = [{"id": "org/st-model", "revision": "a" * 40, "pooling": "cls"}, {"id": "org/gone", "revision": "d" * 40}]
    runs = {}
    with fakehub.serve(repos) as url:
        for name, compare in (("mixed", [bad[0], good[0], bad[1], good[1]]), ("good", good)):
            project = _compare_project(tiny, tmp_path / name, compare)
            result = run_module("stages.compare", "--raw", "data/raw", "--metrics", "metrics/compare.json",
                                "--predictions", "eval/compare", cwd=project,
                                env=fakehub.hub_env(url, tmp_path / f"hf-{name}"))
            assert result.returncode == 0, result.stdout + result.stderr
            runs[name] = (project, result)
    mixed, alone = runs["mixed"][0], runs["good"][0]
    metrics = json.loads((mixed / "metrics/compare.json").read_text(encoding="utf-8"))
    assert metrics == json.loads((alone / "metrics/compare.json").read_text(encoding="utf-8"))
    assert set(metrics) == {"org/good", "org/plain"}
    assert metrics["org/good"]["korsts_test"]["avg"] != metrics["org/plain"]["korsts_test"]["avg"]
    manifest = json.loads((mixed / "eval/compare/manifest.json").read_text(encoding="utf-8"))
    contradiction = ("compare: org/st-model: pooling 'cls' in params.yaml, but the repository's "
                     "1_Pooling/config.json says 'mean'; leave pooling empty to follow the repository")
    gone = f"org/gone@{'d' * 40}: unknown hub id (or private without a token); expected an existing model id or a " \
           "local folder (for a private one, set HF_TOKEN or run `hf auth login` with a token that can read it)"
    assert manifest["failed"] == [{"id": "org/st-model", "revision": "a" * 40, "reason": contradiction},
                                  {"id": "org/gone", "revision": "d" * 40, "reason": gone}]
    assert set(manifest["models"]) == {"org/good", "org/plain"}
    assert json.loads((alone / "eval/compare/manifest.json").read_text(encoding="utf-8"))["failed"] == []
    warnings = [line for line in runs["mixed"][1].stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: compare: org/st-model: not scored, the others are: {contradiction.split(': ', 2)[2]} (once "
        "fixed, rerun the stage with `dvc repro -f`: DVC counts this run as done)",
        f"warning: compare: org/gone: not scored, the others are: {gone} (once fixed, rerun the stage with "
        "`dvc repro -f`: DVC counts this run as done)"]
    predictions = sorted(p.name for p in (mixed / "eval/compare").iterdir())
    assert predictions == sorted(p.name for p in (alone / "eval/compare").iterdir())
    for name in predictions:
        if name != "manifest.json":
            assert (mixed / "eval/compare" / name).read_bytes() == (alone / "eval/compare" / name).read_bytes()
