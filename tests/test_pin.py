"""`simcse-ko pin`: the sha256s and commits a run recorded go into params.yaml, only those values
change (comments, order, spacing byte for byte), and a disagreement is an error that writes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline import yamlio
from pipeline.errors import UserError
from pipeline.pin import _ABSENT, Pin, apply_pins, pin_project, set_value
from tests.conftest import ROOT, run_module

PARAMS_TEXT = (ROOT / "params.yaml").read_text(encoding="utf-8")
PARAMS = yamlio.load(PARAMS_TEXT)
COMMITS = {"klue/bert-base": hashlib.sha1(b"klue/bert-base").hexdigest(),
           "klue/roberta-base": hashlib.sha1(b"klue/roberta-base").hexdigest()}


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _raw_manifest(params: dict, **override: str) -> dict:
    """data/raw/manifest.json as the download stage writes it: pinned hashes as pinned, the rest recorded."""
    from pipeline.params import Params
    from pipeline.sources import resolved_sources

    files = {}
    urls = {key: entry["url"] for key, entry in resolved_sources(Params(params)).items()}  # roots filled in
    for key, entry in params["sources"].items():
        revision = entry.get("revision")
        files[key] = {"file": f"{key}.x", "source": urls[key].replace("{revision}", revision or ""),
                      "revision": revision, "sha256": override.get(key) or entry.get("sha256") or _sha(key),
                      "sha256_pinned": entry.get("sha256") is not None, "bytes": 1, "rows": 1}
    return {"files": files}


def _record(model: str, commit: str | None, kind: str = "hub") -> dict:
    return {"model": model, "source": f"https://huggingface.co/{model}", "kind": kind, "revision": "main",
            "commit": commit, "pinned": False, "files": {"config.json": "0" * 64}}


def _project(tmp_path: Path, text: str, models_layout: str = "per-variant", **override: str) -> Path:
    (tmp_path / "params.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "manifest.json").write_text(
        json.dumps(_raw_manifest(yamlio.load(text), **override)), encoding="utf-8")
    models = tmp_path / "data" / "models"
    if models_layout == "per-variant":  # data/models/<variant>/manifest.json, one record each
        for variant in ("bert-unsup", "bert-sup", "roberta-unsup"):
            model = "klue/roberta-base" if variant.startswith("roberta") else "klue/bert-base"
            (models / variant).mkdir(parents=True)
            (models / variant / "manifest.json").write_text(json.dumps(_record(model, COMMITS[model])))
    else:  # data/models/manifest.json = {slug: record}
        models.mkdir(parents=True)
        (models / "manifest.json").write_text(json.dumps(
            {m.replace("/", "--"): _record(m, c) for m, c in COMMITS.items()}))
    return tmp_path


def _changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    assert len(a) == len(b)
    return sorted((x, y) for x, y in zip(a, b) if x != y)


EXPECTED_CHANGES = sorted([
    ("  klue/bert-base: main\n", f"  klue/bert-base: {COMMITS['klue/bert-base']}\n"),
    ("  klue/roberta-base: main\n", f"  klue/roberta-base: {COMMITS['klue/roberta-base']}\n"),
    ("    sha256:\n", f"    sha256: {_sha('corpus')}\n"),
    ("    sha256:\n", f"    sha256: {_sha('kornli_mnli')}\n"),
    ("    sha256:\n", f"    sha256: {_sha('kornli_snli')}\n"),
])


@pytest.mark.parametrize("layout", ["per-variant", "one-manifest"])
def test_pin_writes_recorded_values_and_nothing_else(tmp_path, layout):
    root = _project(tmp_path, PARAMS_TEXT, layout)
    pins, problems, _ = pin_project(root)
    assert problems == [] and len(pins) == 5
    new = (root / "params.yaml").read_text(encoding="utf-8")
    assert _changed_lines(PARAMS_TEXT, new) == EXPECTED_CHANGES
    pinned = yamlio.load(new)
    assert pinned["model_revisions"] == COMMITS
    for key in ("corpus", "kornli_mnli", "kornli_snli"):
        assert pinned["sources"][key]["sha256"] == _sha(key)
    assert pinned["sources"]["korsts_test"]["sha256"] == PARAMS["sources"]["korsts_test"]["sha256"]
    # a second pin finds nothing left to do
    assert pin_project(root)[:2] == ([], [])


def test_pin_cli_dry_run_prints_and_writes_nothing(tmp_path):
    root = _project(tmp_path, PARAMS_TEXT)
    result = run_module("pipeline.cli", "pin", "--dry-run", cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"sources.corpus.sha256: null -> {_sha('corpus')}",
        f"sources.kornli_mnli.sha256: null -> {_sha('kornli_mnli')}",
        f"sources.kornli_snli.sha256: null -> {_sha('kornli_snli')}",
        f"model_revisions.klue/bert-base: main -> {COMMITS['klue/bert-base']}",
        f"model_revisions.klue/roberta-base: main -> {COMMITS['klue/roberta-base']}",
        "params.yaml: not changed (--dry-run); 5 value(s) would be pinned",
    ]
    assert (root / "params.yaml").read_text(encoding="utf-8") == PARAMS_TEXT


def test_a_recorded_hash_that_disagrees_with_the_pin_is_an_error(tmp_path):
    root = _project(tmp_path, PARAMS_TEXT, korsts_test="ab" * 32)
    result = run_module("pipeline.cli", "pin", cwd=root)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: sources.korsts_test.sha256: pinned {PARAMS['sources']['korsts_test']['sha256']} but the run "
        f"recorded {'ab' * 32}; check which is right before changing it"]
    assert (root / "params.yaml").read_text(encoding="utf-8") == PARAMS_TEXT


def test_a_run_of_other_sources_is_not_pinned(tmp_path):
    text = PARAMS_TEXT
    root = _project(tmp_path, text)
    edited = text.replace("    revision: v1.0.0\n", "    revision: v1.1.0\n")
    (root / "params.yaml").write_text(edited, encoding="utf-8")
    pins, problems, _ = pin_project(root)
    assert problems == ["sources.corpus: data/raw/manifest.json records https://github.com/snumin44/SimCSE-KO/"
                        "releases/download/v1.0.0/korean_wiki_1m.txt at revision v1.0.0, params.yaml now names "
                        "https://github.com/snumin44/SimCSE-KO/releases/download/v1.1.0/korean_wiki_1m.txt; "
                        "rerun `dvc repro download`"]
    assert (root / "params.yaml").read_text(encoding="utf-8") == edited


def test_pin_on_the_smoke_layout(tmp_path):
    """The smoke project's params.yaml (written by pipeline/smoke.py as DVC writes YAML): a hub model
    missing from model_revisions gets an entry; a local model is not pinned."""
    from pipeline.project import write_params
    from pipeline.smoke import PARAMS_HEADER, project_params

    merged = project_params(ROOT, {key: _sha(key) for key in PARAMS["sources"]})
    merged["variants"]["roberta-unsup"]["model"] = "org/other"
    merged["sources"]["klue_dev"]["sha256"] = None
    write_params(tmp_path, merged, PARAMS_HEADER)
    text = (tmp_path / "params.yaml").read_text(encoding="utf-8")
    root = _project(tmp_path, text, "one-manifest")
    other = hashlib.sha1(b"org/other").hexdigest()
    (root / "data/models/manifest.json").write_text(json.dumps({
        "local--tiny-bert": _record("sources/tiny-bert", None, kind="local"),
        "org--other": _record("org/other", other)}))
    pins, problems, new = pin_project(root)
    assert problems == [] and [p.describe() for p in pins] == [
        f"sources.klue_dev.sha256: null -> {_sha('klue_dev')}",
        f"model_revisions.org/other: (absent) -> {other}"]
    a, b = text.splitlines(keepends=True), new.splitlines(keepends=True)
    at = a.index("  klue/roberta-base: main\n") + 1  # the new entry closes the model_revisions block
    assert b == a[:at] + [f"  org/other: {other}\n"] + [
        f"    sha256: {_sha('klue_dev')}\n" if i == a.index("    sha256:\n") else line
        for i, line in enumerate(a)][at:]
    assert yamlio.load(new)["model_revisions"]["org/other"] == other


def test_an_added_key_lands_above_the_comment_that_follows_its_block(tmp_path):
    """In the committed params.yaml, model_revisions is followed by a blank line and a comment: a model
    missing there is added as the block's last line, above them (ruamel.yaml alone writes it below)."""
    text = PARAMS_TEXT.replace("  klue/roberta-base: main\n", "")
    assert "  klue/bert-base: main\n\n# What the training data" in text
    root = _project(tmp_path, text)
    pins, problems, new = pin_project(root)
    assert problems == [] and f"model_revisions.klue/roberta-base: (absent) -> {COMMITS['klue/roberta-base']}" \
        in [p.describe() for p in pins]
    expected = PARAMS_TEXT
    for model, commit in COMMITS.items():
        expected = expected.replace(f"  {model}: main\n", f"  {model}: {commit}\n")
    for key in ("corpus", "kornli_mnli", "kornli_snli"):  # the unpinned sources, in file order
        expected = expected.replace("    sha256:\n", f"    sha256: {_sha(key)}\n", 1)
    assert new == expected


def _evaluated(params: dict, commits: dict[str, str]) -> dict:
    """eval/compare/manifest.json as the compare stage writes it: every entry's resolved commit."""
    models = {}
    for entry in params["compare"]:
        revision = entry.get("revision") or "main"
        models[entry["id"]] = {"model": entry["id"], "kind": "hub", "revision": revision,
                               "commit": commits.get(entry["id"], revision), "pinned": revision != "main",
                               "files": {}, "pooling": entry["pooling"], "normalize": entry["normalize"]}
    return {"max_len": 64, "protocol": "card", "models": models}


def test_pin_writes_the_commit_a_compared_encoder_resolved_to(tmp_path):
    """`compare[i].revision: main` gets the commit the compare stage recorded (one line changed);
    entries already pinned to what was recorded stay; a published checkpoint at a branch is pinned too."""
    unpinned = [e["id"] for e in PARAMS["compare"] if len(e.get("revision") or "") != 40]
    assert unpinned == ["BM-K/KoSimCSE-bert"]  # params.yaml as committed: the one the note names
    text = PARAMS_TEXT.replace("      revision: 23f589db9dc461932fd41c9f0acce67beab03e14\n", "      revision: main\n")
    root = _project(tmp_path, text)
    commit = hashlib.sha1(b"BM-K/KoSimCSE-bert").hexdigest()
    (root / "eval" / "compare").mkdir(parents=True)
    (root / "eval" / "compare" / "manifest.json").write_text(
        json.dumps(_evaluated(PARAMS, {"BM-K/KoSimCSE-bert": commit})), encoding="utf-8")
    (root / "eval" / "published").mkdir(parents=True)
    published = hashlib.sha1(b"bert-sup").hexdigest()
    (root / "eval" / "published" / "manifest.json").write_text(json.dumps({"enabled": True, "checkpoints": {
        "bert-sup": {"model": "snumin44/simcse-ko-bert-supervised", "kind": "hub", "revision": "main",
                     "commit": published, "pinned": False}}}), encoding="utf-8")
    pins, problems, new = pin_project(root)
    assert problems == []
    assert [p.describe() for p in pins][-2:] == [
        f"published.checkpoints.bert-sup.revision: main -> {published}",
        f"compare[2].revision: main -> {commit}"]
    assert _changed_lines(text, new) == sorted(EXPECTED_CHANGES + [
        ("      revision: main\n", f"      revision: {published}\n"),
        ("  revision: main\n", f"  revision: {commit}\n")])
    pinned = yamlio.load(new)
    assert pinned["compare"][2] == {**PARAMS["compare"][2], "revision": commit}
    assert pinned["compare"][:2] == PARAMS["compare"][:2] and pinned["compare"][3:] == PARAMS["compare"][3:]
    assert pin_project(root)[:2] == ([], [])


def test_a_compared_encoder_recorded_at_another_commit_is_an_error(tmp_path):
    root = _project(tmp_path, PARAMS_TEXT)
    (root / "eval" / "compare").mkdir(parents=True)
    (root / "eval" / "compare" / "manifest.json").write_text(
        json.dumps(_evaluated(PARAMS, {"BAAI/bge-m3": "f" * 40})), encoding="utf-8")
    pins, problems, _ = pin_project(root)
    assert problems == [f"compare[6].revision: pinned {PARAMS['compare'][6]['revision']} but the run recorded "
                        f"{'f' * 40}; rerun `dvc repro compare`"]
    assert (root / "params.yaml").read_text(encoding="utf-8") == PARAMS_TEXT


def _edit(text: str, path: tuple[str | int, ...], value: str) -> str:
    data = yamlio.load_for_update(text)
    set_value(data, path, value)
    return yamlio.dump(data)


@pytest.mark.parametrize("text, path, value, expected", [
    ("a:\n  b: null   # keep me\n", ("a", "b"), "x", "a:\n  b: x      # keep me\n"),  # the comment's column
    ("a:\n  b:\nc: 1\n", ("a", "b"), "x", "a:\n  b: x\nc: 1\n"),
    ("a:\n  k: {url: u, sha256: null}\n", ("a", "k", "sha256"), "x", "a:\n  k: {url: u, sha256: x}\n"),
    ("a:\n  k: {url: u}\n", ("a", "k", "sha256"), "x", "a:\n  k: {url: u, sha256: x}\n"),
    ("a: {}\n", ("a", "m/n"), "0" * 40, f"a:\n  m/n: '{'0' * 40}'\n"),  # all digits: quoted to stay a string
    ("a: null\n", ("a", "b"), "x", "a:\n  b: x\n"),
    # a key added at the end of a block goes above the blank and comment lines that follow it
    ("a:\n  b: 1\n\n# next\nc: 1\n", ("a", "z"), "x", "a:\n  b: 1\n  z: x\n\n# next\nc: 1\n"),
    ("a:\n  b: 1  # eol\n# next\nc: 1\n", ("a", "z"), "x", "a:\n  b: 1  # eol\n  z: x\n# next\nc: 1\n"),
    ("a:\n  b:\n    c: 1\n\n# next\nd: 1\n", ("a", "z"), "x", "a:\n  b:\n    c: 1\n  z: x\n\n# next\nd: 1\n"),
    ("a:\n  b:\n  - 1  # e\n\n# next\n", ("a", "z"), "x", "a:\n  b:\n  - 1  # e\n  z: x\n\n# next\n"),
    ("a:   # eol\n\n# next\nc: 1\n", ("a", "z"), "x", "a:   # eol\n  z: x\n\n# next\nc: 1\n"),
    # block sequences: a key of an item's first line or a later one
    ("l:\n- id: a\n  r: main\n- id: b\n  r: main\n", ("l", 1, "r"), "x", "l:\n- id: a\n  r: main\n- id: b\n  r: x\n"),
    ("l:\n- r: main  # c\n  t:\n  - u\n- r: main\n", ("l", 0, "r"), "x", "l:\n- r: x     # c\n  t:\n  - u\n- r: main\n"),
    ("l:\n- id: a\n- id: b\n\n# next\nm: 1\n", ("l", 1, "r"), "x", "l:\n- id: a\n- id: b\n  r: x\n\n# next\nm: 1\n"),
])
def test_set_value_touches_one_line(text, path, value, expected):
    assert _edit(text, path, value) == expected


def test_set_value_refuses_what_is_not_there():
    with pytest.raises(UserError, match="cannot find nope.b in a layout this command edits; set it by hand to x"):
        _edit("a: 1\n", ("nope", "b"), "x")
    with pytest.raises(UserError, match=r"cannot find l\[2\].r in a layout"):
        _edit("l:\n- r: 1\n- r: 2\n", ("l", 2, "r"), "x")
    with pytest.raises(UserError, match=r"cannot find a.b in a layout"):  # a scalar takes no key
        _edit("a: 1\n", ("a", "b"), "x")


def test_apply_pins_checks_the_written_values(monkeypatch):
    """The text written is read back: a value other than the pinned ones that changed stops the pin."""
    assert apply_pins("a: null\nb: 1\n", [Pin(("a", "c"), _ABSENT, "x")]) == "a:\n  c: x\nb: 1\n"
    monkeypatch.setattr(yamlio, "dump", lambda data: "a:\n  c: x\nb: 2\n")
    with pytest.raises(UserError, match=r"would change more than the pinned values; pin by hand: a.c: \(absent\) -> x"):
        apply_pins("a: null\nb: 1\n", [Pin(("a", "c"), _ABSENT, "x")])
