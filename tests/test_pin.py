"""`simcse-ko pin`: the sha256s and commits a run recorded go into params.yaml, only those values
change (comments, order, spacing byte for byte), and a disagreement is an error that writes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from pipeline.errors import UserError
from pipeline.pin import _ABSENT, Pin, apply_pins, pin_project, set_value
from pipeline.smoke import deep_merge
from tests.conftest import ROOT, run_module

PARAMS_TEXT = (ROOT / "params.yaml").read_text(encoding="utf-8")
PARAMS = yaml.safe_load(PARAMS_TEXT)
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
        json.dumps(_raw_manifest(yaml.safe_load(text), **override)), encoding="utf-8")
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
    pinned = yaml.safe_load(new)
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
    """The smoke project's params.yaml (yaml.safe_dump of params.yaml + smoke/params.yaml): a hub
    model missing from model_revisions gets an entry; a local model is not pinned."""
    merged = deep_merge(PARAMS, yaml.safe_load((ROOT / "smoke" / "params.yaml").read_text(encoding="utf-8")))
    merged["variants"]["roberta-unsup"]["model"] = "org/other"
    for key in merged["sources"]:
        merged["sources"][key]["sha256"] = None if key == "klue_dev" else _sha(key)
    text = "# generated\n" + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True)
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
        f"    sha256: {_sha('klue_dev')}\n" if i == a.index("    sha256: null\n") else line
        for i, line in enumerate(a)][at:]
    assert yaml.safe_load(new)["model_revisions"]["org/other"] == other


@pytest.mark.parametrize("text, path, value, expected", [
    ("a:\n  b: null   # keep me\n", ("a", "b"), "x", "a:\n  b: x   # keep me\n"),
    ("a:\n  b:\nc: 1\n", ("a", "b"), "x", "a:\n  b: x\nc: 1\n"),
    ("a:\n  b: 1\n\n# next\nc: 1\n", ("a", "z"), "x", "a:\n  b: 1\n  z: x\n\n# next\nc: 1\n"),
    ("a:\n  k: {url: u, sha256: null}\n", ("a", "k", "sha256"), "x", "a:\n  k: {url: u, sha256: x}\n"),
    ("a:\n  k: {url: u}\n", ("a", "k", "sha256"), "x", "a:\n  k: {url: u, sha256: x}\n"),
    ("a: {}\n", ("a", "m/n"), "0" * 40, f'a: {{m/n: "{"0" * 40}"}}\n'),  # all digits: quoted to stay a string
])
def test_set_value_touches_one_line(text, path, value, expected):
    assert set_value(text, path, value) == expected


def test_set_value_refuses_a_layout_it_cannot_edit():
    with pytest.raises(UserError, match="cannot find nope.b in a layout this command edits; set it by hand to x"):
        set_value("a: 1\n", ("nope", "b"), "x")
    # `a: null` cannot take a child line: the re-parse catches it and nothing is written
    with pytest.raises(UserError, match=r"would change more than the pinned values; pin by hand: a.b: \(absent\) -> x"):
        apply_pins("a: null\n", [Pin(("a", "b"), _ABSENT, "x")])
