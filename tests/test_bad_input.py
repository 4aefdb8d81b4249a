"""Bad input, through the real stages as a user runs them.

The requirement: each bad input gives a one-line error naming the file (and line or record) or
the param and what was expected, a non-zero exit, no Python traceback, and leaves earlier outputs
intact. The download cases run ``python -m stages.download`` on a copy of a project whose sources
are small local files and which already holds a good data/raw; the params cases run
``python -m stages.validate`` on a copy of the real params.yaml with one value changed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_module

HEADER = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2"
ROW1 = "main-captions\tMSRvid\t2012test\t0001\t5.000\t비행기가 이륙하고 있다.\t비행기가 이륙하는 중이다."
ROW2 = 'main-news\theadlines\t2013\t0002\t3.200\t"그가 떠났다고 말했다.\t그는 떠났다.'
ROW3 = "main-forum\tdeft-forum\t2014\t0003\t0.500\t작은 집이다.\t다른 문장이다."
KORSTS_GOOD = "\n".join([HEADER, ROW1, ROW2, ROW3])


def _klue(records: list[dict]) -> str:
    return json.dumps(records, ensure_ascii=False, indent=4)


def _record(guid: str, label: float = 3.2, **changes) -> dict:
    record = {"guid": guid, "source": "airbnb-rtt", "sentence1": "숙소가 깨끗했어요.", "sentence2": "방이 청결했어요.",
              "labels": {"label": label, "real-label": label, "binary-label": int(label >= 3)}}
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return record


NLI_HEADER = "sentence1\tsentence2\tgold_label"
NLI_GOOD = "\n".join([NLI_HEADER, "남자가 공을 찬다.\t남자가 운동한다.\tentailment",
                      "남자가 공을 찬다.\t남자가 잔다.\tcontradiction",
                      "남자가 공을 찬다.\t남자가 웃는다.\tneutral"]) + "\n"

#: source key -> (file name under src/v1/, good bytes)
GOOD = {
    "corpus": ("corpus.txt", "첫 문장이다.\n\n둘째 문장이다.\n"),
    "korsts_train": ("sts-train.tsv", KORSTS_GOOD + "\n"),
    "korsts_dev": ("sts-dev.tsv", KORSTS_GOOD),  # dev and test have no final newline, like the real ones
    "korsts_test": ("sts-test.tsv", KORSTS_GOOD),
    "klue_dev": ("klue.json", _klue([_record("g0", 3.2), _record("g1", 0.0)])),
    "kornli_mnli": ("mnli.tsv", NLI_GOOD),
    "kornli_snli": ("snli.tsv", NLI_GOOD),
}
REVISION = "v1"


def _sources() -> dict:
    """params.yaml `sources`, same keys and structure as the real one, pointing at src/{revision}/."""
    real = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["sources"]
    assert set(real) == set(GOOD)
    sources = {key: {"url": f"src/{{revision}}/{GOOD[key][0]}", "revision": REVISION, "sha256": None}
               for key in real}
    # one pinned hash, so the good project also exercises verification
    sources["korsts_test"]["sha256"] = hashlib.sha256(GOOD["korsts_test"][1].encode("utf-8")).hexdigest()
    return sources


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden leftovers included) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _download(project: Path):
    return run_module("stages.download", "--out", "data/raw", "--params", "params.yaml", cwd=project, timeout=120)


@pytest.fixture(scope="module")
def good_project(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A project with local sources and a data/raw from a successful run; returns it and data/'s bytes."""
    project = tmp_path_factory.mktemp("good")
    for name, text in GOOD.values():
        path = project / "src" / REVISION / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    real = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params = {"sources": _sources(), "corpus": real["corpus"], "triplets": real["triplets"]}  # what to fetch
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    result = _download(project)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return project, _snapshot(project / "data")


@pytest.fixture
def project(good_project, tmp_path) -> Path:
    """A private copy of the good project (its data/raw included) for one case to break."""
    dest = tmp_path / "project"
    shutil.copytree(good_project[0], dest)
    return dest


def test_good_project_manifest(good_project):
    _, data = good_project
    manifest = json.loads(data["raw/manifest.json"])["files"]
    rows = {key: (entry["rows"], entry["source"], entry["sha256_pinned"]) for key, entry in manifest.items()}
    assert rows == {
        "corpus": (2, "src/v1/corpus.txt", False),
        "korsts_train": (3, "src/v1/sts-train.tsv", False),
        "korsts_dev": (3, "src/v1/sts-dev.tsv", False),
        "korsts_test": (3, "src/v1/sts-test.tsv", True),
        "klue_dev": (2, "src/v1/klue.json", False),
        "kornli_mnli": (3, "src/v1/mnli.tsv", False),
        "kornli_snli": (3, "src/v1/snli.tsv", False),
    }
    assert manifest["corpus"]["blank_lines"] == 1
    for key, (name, text) in GOOD.items():
        assert data[f"raw/{manifest[key]['file']}"] == text.encode("utf-8")
        assert manifest[key]["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()


def _korsts(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def _cols(row: str, **changes: str) -> str:
    fields = row.split("\t")
    for index, value in changes.items():
        fields[int(index[1:])] = value
    return "\t".join(fields)


SHA_TEST = hashlib.sha256(GOOD["korsts_test"][1].encode("utf-8")).hexdigest()

# id -> (source key whose file is replaced, new bytes (None: delete the file), where, what); korsts_test is
# pinned in the good project, so its content cases would stop at the hash check.
# `where` must follow "error: " (the offending file/param and line/record); `what` says what was expected.
FILE_CASES = {
    "korsts-field-count": ("korsts_train", _korsts(ROW1, ROW2, ROW3.rsplit("\t", 1)[0]),
                           "sources.korsts_train: src/v1/sts-train.tsv:4:",
                           "expected 7 tab-separated fields (genre filename year id score sentence1 sentence2), "
                           "found 6"),
    "korsts-extra-field": ("korsts_train", _korsts(ROW1, ROW2 + "\t여분"),
                           "sources.korsts_train: src/v1/sts-train.tsv:3:", "expected 7 tab-separated fields"),
    "korsts-score-text": ("korsts_train", _korsts(_cols(ROW1, c4="high"), ROW2),
                          "sources.korsts_train: src/v1/sts-train.tsv:2:",
                          "score 'high' is not a number; expected a float in [0, 5]"),
    "korsts-score-above-5": ("korsts_dev", _korsts(ROW1, _cols(ROW2, c4="5.5")),
                             "sources.korsts_dev: src/v1/sts-dev.tsv:3:", "score 5.5 is outside [0, 5]"),
    "korsts-score-negative": ("korsts_dev", _korsts(ROW1, _cols(ROW2, c4="-0.1")),
                              "sources.korsts_dev: src/v1/sts-dev.tsv:3:", "score -0.1 is outside [0, 5]"),
    "korsts-score-nan": ("korsts_train", _korsts(_cols(ROW1, c4="nan")),
                         "sources.korsts_train: src/v1/sts-train.tsv:2:", "score nan is outside [0, 5]"),
    "korsts-empty-sentence1": ("korsts_train", _korsts(ROW1, ROW2, _cols(ROW3, c5=" ")),
                               "sources.korsts_train: src/v1/sts-train.tsv:4:",
                               "sentence1 is empty; expected a sentence"),
    "korsts-empty-sentence2": ("korsts_train", _korsts(_cols(ROW1, c6="")),
                               "sources.korsts_train: src/v1/sts-train.tsv:2:",
                               "sentence2 is empty; expected a sentence"),
    "korsts-missing-header": ("korsts_train", "\n".join([ROW1, ROW2]) + "\n",
                              "sources.korsts_train: src/v1/sts-train.tsv:1:",
                              "expected the tab-separated KorSTS header"),
    "korsts-other-header": ("korsts_dev", _korsts(ROW1).replace("\tscore\t", "\tsimilarity\t"),
                            "sources.korsts_dev: src/v1/sts-dev.tsv:1:", "expected the tab-separated KorSTS header"),
    "korsts-not-utf8": ("korsts_train", _korsts(ROW1).encode("utf-8") + ROW2.encode("cp949") + b"\n",
                        "sources.korsts_train: src/v1/sts-train.tsv:3:", "not valid UTF-8"),
    "korsts-empty-file": ("korsts_dev", "", "sources.korsts_dev: src/v1/sts-dev.tsv:", "empty file"),
    "korsts-header-only": ("korsts_train", HEADER + "\n", "sources.korsts_train: src/v1/sts-train.tsv:",
                           "no data rows after the header"),
    "klue-invalid-json": ("klue_dev", "[\n" + json.dumps(_record("g0")) + "\n" + json.dumps(_record("g1")) + "\n]",
                          "sources.klue_dev: src/v1/klue.json:3:1:", "not valid JSON"),
    "klue-truncated-json": ("klue_dev", _klue([_record("g0"), _record("g1")])[:-20],
                            "sources.klue_dev: src/v1/klue.json:", "not valid JSON"),
    "klue-missing-sentence1": ("klue_dev", _klue([_record("g0"), _record("g1", sentence1=None)]),
                               "sources.klue_dev: src/v1/klue.json: record 1", "missing 'sentence1'"),
    "klue-missing-sentence2": ("klue_dev", _klue([_record("g0", sentence2=None)]),
                               "sources.klue_dev: src/v1/klue.json: record 0", "missing 'sentence2'"),
    "klue-missing-labels": ("klue_dev", _klue([_record("g0"), _record("g1"), _record("g2", labels=None)]),
                            "sources.klue_dev: src/v1/klue.json: record 2", "missing 'labels'"),
    "klue-missing-label": ("klue_dev", _klue([_record("g0", labels={"real-label": 3.0})]),
                           "sources.klue_dev: src/v1/klue.json: record 0 (guid g0)", "missing 'labels.label'"),
    "klue-label-above-5": ("klue_dev", _klue([_record("g0"), _record("g1", 5.2)]),
                           "sources.klue_dev: src/v1/klue.json: record 1 (guid g1)",
                           "labels.label = 5.2 is outside [0, 5]"),
    "klue-label-negative": ("klue_dev", _klue([_record("g0", -1.0)]),
                            "sources.klue_dev: src/v1/klue.json: record 0 (guid g0)",
                            "labels.label = -1.0 is outside [0, 5]"),
    "klue-label-text": ("klue_dev", _klue([_record("g0", labels={"label": "3.2"})]),
                        "sources.klue_dev: src/v1/klue.json: record 0 (guid g0)", "labels.label = '3.2'"),
    "klue-duplicate-guid": ("klue_dev", _klue([_record("g0"), _record("g1"), _record("g0")]),
                            "sources.klue_dev: src/v1/klue.json: record 2 (guid g0)", "duplicate guid"),
    "klue-empty-sentence": ("klue_dev", _klue([_record("g0", sentence2="  ")]),
                            "sources.klue_dev: src/v1/klue.json: record 0 (guid g0)", "sentence2 is empty"),
    "klue-guid-not-a-string": ("klue_dev", _klue([_record("g0"), {**_record("g1"), "guid": ["g1"]}]),
                               "sources.klue_dev: src/v1/klue.json: record 1",
                               "guid = ['g1']: expected a non-empty string"),
    "klue-not-an-array": ("klue_dev", json.dumps({"data": []}),
                          "sources.klue_dev: src/v1/klue.json:", "expected a non-empty JSON array"),
    "corpus-empty": ("corpus", "", "sources.corpus: src/v1/corpus.txt:",
                     "the corpus has no sentences (empty or only blank lines)"),
    "corpus-only-blank-lines": ("corpus", "\n  \n\t\r\n\n", "sources.corpus: src/v1/corpus.txt:",
                                "the corpus has no sentences (empty or only blank lines)"),
    "corpus-not-utf8": ("corpus", "첫 문장.\n".encode("utf-8") + "둘째 문장.\n".encode("euc-kr"),
                        "sources.corpus: src/v1/corpus.txt:2:", "not valid UTF-8"),
    "kornli-unknown-label": ("kornli_snli", NLI_GOOD + "남자가 공을 찬다.\t남자가 걷는다.\tneutrall\n",
                             "sources.kornli_snli: src/v1/snli.tsv:5:",
                             "unknown gold_label 'neutrall'; expected one of entailment, neutral, contradiction"),
    "kornli-field-count": ("kornli_mnli", NLI_GOOD + "남자가 공을 찬다.\tentailment\n",
                           "sources.kornli_mnli: src/v1/mnli.tsv:5:", "expected 3 tab-separated fields"),
    "kornli-header-only": ("kornli_snli", NLI_HEADER + "\n", "sources.kornli_snli: src/v1/snli.tsv:",
                           "no data rows after the header"),
    "kornli-header": ("kornli_mnli", NLI_GOOD.replace("gold_label", "label", 1),
                      "sources.kornli_mnli: src/v1/mnli.tsv:1:", "expected 'sentence1\\tsentence2\\tgold_label'"),
    "missing-source-file": ("korsts_dev", None, "src/v1/sts-dev.tsv:", "source file not found"),
}

PARAM_CASES = {
    "sha256-mismatch": ({"korsts_test": {"sha256": "0" * 64}}, "src/v1/sts-test.tsv:",
                        f"sha256 mismatch: expected {'0' * 64}, got {SHA_TEST}; file not kept"),
    "sha256-malformed": ({"korsts_test": {"sha256": "abc"}}, "params.yaml:",
                         "sources.korsts_test.sha256 = 'abc': expected 64 hex characters or null"),
    "missing-url-file": ({"kornli_mnli": {"url": "src/{revision}/multinli.train.ko.tsv"}},
                         "src/v1/multinli.train.ko.tsv:", "source file not found"),
    "revision-not-a-string": ({"korsts_train": {"revision": 1.0}}, "params.yaml:",
                              "sources.korsts_train.revision = 1.0: expected a string"),
    "revision-missing": ({"klue_dev": {"revision": None}}, "source src/{revision}/klue.json:",
                         "has a {revision} placeholder but no revision is set"),
}


def _assert_one_line_error(result, where: str, what: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: " + where), line
    assert what in line, line
    return line


@pytest.mark.parametrize("key, content, where, what", FILE_CASES.values(), ids=FILE_CASES.keys())
def test_bad_source_file(good_project, project, key, content, where, what):
    path = project / "src" / REVISION / GOOD[key][0]
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    result = _download(project)
    _assert_one_line_error(result, where, what)
    assert _snapshot(project / "data") == good_project[1]  # data/raw as before, no temporary leftovers


@pytest.mark.parametrize("change, where, what", PARAM_CASES.values(), ids=PARAM_CASES.keys())
def test_bad_source_param(good_project, project, change, where, what):
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    for key, values in change.items():
        params["sources"][key].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    result = _download(project)
    _assert_one_line_error(result, where, what)
    assert _snapshot(project / "data") == good_project[1]


def test_bom_crlf_korsts_is_accepted(project):
    data = b"\xef\xbb\xbf" + KORSTS_GOOD.replace("\n", "\r\n").encode("utf-8") + b"\r\n"
    (project / "src" / REVISION / "sts-train.tsv").write_bytes(data)
    result = _download(project)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((project / "data" / "raw" / "manifest.json").read_text(encoding="utf-8"))["files"]
    assert manifest["korsts_train"]["rows"] == 3
    assert manifest["korsts_train"]["bytes"] == len(data)
    assert manifest["korsts_train"]["sha256"] == hashlib.sha256(data).hexdigest()
    # the raw file is kept byte for byte; the parsers normalise on reading
    assert (project / "data" / "raw" / "korsts_train.tsv").read_bytes() == data


# --- params validation ---------------------------------------------------------------------------

REAL_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
FIRST = next(iter(REAL_PARAMS["variants"]))  # the first variant is validated first
SUP = next(name for name, v in REAL_PARAMS["variants"].items() if (v or {}).get("data") == "nli")
LAST = list(REAL_PARAMS["variants"])[-1]


def _set(dotted: str, value):
    def change(params: dict) -> None:
        *parents, leaf = dotted.split(".")
        node = params
        for part in parents:
            node = node[part]
        node[leaf] = value
    return change


def _all(*changes):
    def change(params: dict) -> None:
        for one in changes:
            one(params)
    return change


# id -> (change, param named in the error, what is expected)
VALIDATE_CASES = {
    "temp-0": (_set("temp", 0), f"temp (variant {FIRST}) = 0.0", "expected a number > 0"),
    "temp-negative": (_set("temp", -1), f"temp (variant {FIRST}) = -1.0", "expected a number > 0"),
    "temp-variant-override": (_set(f"variants.{SUP}.temp", 0), f"temp (variant {SUP}) = 0.0",
                              "expected a number > 0"),
    "batch_size-1": (_set("batch_size", 1), f"batch_size (variant {FIRST}) = 1",
                     "expected an integer >= 2 (in-batch negatives need 2 sentences)"),
    "max_len-4": (_set("max_len", 4), f"max_len (variant {FIRST}) = 4", "expected an integer >= 8"),
    "lr-0": (_set("lr", 0), f"lr (variant {FIRST}) = 0.0", "expected a number > 0"),
    "pooler-avg": (_set("pooler", "avg"), f"pooler (variant {FIRST}) = 'avg'", "expected one of cls, mean, max"),
    "dropout-1": (_set("dropout", 1.0), f"dropout (variant {FIRST}) = 1.0", "expected a number in [0, 1)"),
    "dropout-negative": (_set("dropout", -0.1), f"dropout (variant {FIRST}) = -0.1", "expected a number in [0, 1)"),
    "epochs-0": (_set("epochs", 0), f"epochs (variant {FIRST}) = 0", "expected an integer >= 1"),
    "variant-unknown-key": (_set(f"variants.{LAST}.tmep", 0.1), f"variants.{LAST}.tmep",
                            "is not a setting a variant can override; expected one of: model, epochs, max_len, "
                            "batch_size, lr, dropout, temp, pooler, recipe, eval_steps, weight_decay, "
                            "hard_negative_weight, max_grad_norm, warmup_steps, data"),
    "max_grad_norm-negative": (_set("max_grad_norm", -1.0), f"max_grad_norm (variant {FIRST}) = -1.0",
                               "expected a number >= 0 (0 = no gradient clipping)"),
    "max_grad_norm-variant-override": (_set("variants.bert-unsup-paper.max_grad_norm", "1"),
                                       "max_grad_norm (variant bert-unsup-paper) = '1'", "expected a finite number"),
    "warmup_steps-card-recipe": (_set("warmup_steps", 10), f"warmup_steps (variant {FIRST}) = 10",
                                 "expected 0 with recipe card (warmup belongs to recipe simcse)"),
    "warmup_steps-variant-negative": (_set("variants.bert-unsup-paper.warmup_steps", -1),
                                      "warmup_steps (variant bert-unsup-paper) = -1", "expected an integer >= 0"),
    "seeds-duplicate": (_set("seeds", [1, 2, 1]), "seeds = [1, 2, 1]", "expected distinct seeds"),
    "lr-string": (_set("lr", "fast"), f"lr (variant {FIRST}) = 'fast'", "expected a finite number"),
    "protocol-x": (_set("protocol", "x"), "protocol = 'x'", "expected one of card, clean"),
    "triplets-recipe": (_set("triplets.recipe", "every"), "triplets.recipe = 'every'", "expected one of card, all"),
    "nnodes-0": (_set("nnodes", 0), "nnodes = 0", "expected an integer >= 1"),
    "node_rank-outside": (_set("node_rank", 1), "node_rank = 1", "expected an integer in [0, 0] (nnodes = 1)"),
    "master_addr-missing": (_set("nnodes", 2), "master_addr = None",
                            "expected the host name or IP address of node 0 when nnodes = 2 > 1"),
    "master_port-high": (_set("master_port", 70000), "master_port = 70000", "expected an integer in [1, 65535]"),
    "batch_size-nodes": (_all(_set("nnodes", 3), _set("master_addr", "10.0.0.1")),
                         f"batch_size (variant {FIRST}) = 256",
                         "expected a multiple of nnodes x nproc = 3 (it is the global batch)"),
}


def _validate_project(root: Path, change) -> Path:
    root.mkdir(parents=True)
    params = copy.deepcopy(REAL_PARAMS)
    if change is not None:
        change(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return root


#: Cases also run as ``python -m`` subprocesses. Each start imports torch (~2-3 s), so the rest call the
#: same ``main`` in-process: ``python -m`` adds only ``raise SystemExit(main())`` and the imports' output,
#: which these runs (and the unchanged params' empty stderr) cover.
CLI_CASES = ("temp-0", "protocol-x", "variant-unknown-key")
TRAIN_NOPE = ("--variant", "nope", "--tokens", "data/tokens/nope", "--models", "data/models", "--out", "models/nope",
              "--live", "dvclive/nope", "--resume", "checkpoints/nope", "--timing", "timings/train@nope.json")


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> dict:
    """The subprocess runs, two at a time: the unchanged params, :data:`CLI_CASES`, an unknown train variant."""
    base = tmp_path_factory.mktemp("validate")
    validate = ("stages.validate", "--out", "data/params.ok")
    jobs = {"unchanged": (_validate_project(base / "unchanged", None), validate),
            "train-unknown-variant": (_validate_project(base / "train", None), ("stages.train", *TRAIN_NOPE))}
    for name in CLI_CASES:
        jobs[name] = (_validate_project(base / name, VALIDATE_CASES[name][0]), validate)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_module, *args, cwd=root, timeout=120) for name, (root, args) in jobs.items()}
        return {name: (jobs[name][0], future.result()) for name, future in futures.items()}


def test_real_params_are_valid(cli_runs):
    root, result = cli_runs["unchanged"]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert (root / "data" / "params.ok").read_text(encoding="utf-8") == "ok\n"


@pytest.mark.parametrize("case", VALIDATE_CASES)
def test_bad_param(tmp_path, monkeypatch, capsys, case):
    from stages import validate

    change, param, what = VALIDATE_CASES[case]
    root = _validate_project(tmp_path / "project", change)
    monkeypatch.chdir(root)
    returncode = validate.main(["--out", "data/params.ok"])  # an exception here would be a traceback
    err = capsys.readouterr().err
    _assert_one_line_error(subprocess.CompletedProcess([], returncode, "", err), f"params.yaml: {param}", what)
    assert sorted(p.name for p in root.iterdir()) == ["params.yaml"]  # no data/params.ok, no data/


def test_params_not_utf8(tmp_path, monkeypatch, capsys):
    from stages import validate

    root = _validate_project(tmp_path / "project", None)
    text = (root / "params.yaml").read_text(encoding="utf-8")
    (root / "params.yaml").write_bytes(("# 카드 설정\n" + text).encode("cp949"))  # a Korean editor's save
    monkeypatch.chdir(root)
    returncode = validate.main(["--out", "data/params.ok"])
    err = capsys.readouterr().err
    _assert_one_line_error(subprocess.CompletedProcess([], returncode, "", err), "params.yaml:", "UTF-8")
    assert sorted(p.name for p in root.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_param_cli(cli_runs, case):
    _, param, what = VALIDATE_CASES[case]
    root, result = cli_runs[case]
    _assert_one_line_error(result, f"params.yaml: {param}", what)
    assert sorted(p.name for p in root.iterdir()) == ["params.yaml"]


def test_train_unknown_variant(cli_runs):
    root, result = cli_runs["train-unknown-variant"]
    names = ", ".join(REAL_PARAMS["variants"])
    _assert_one_line_error(result, "params.yaml: unknown variant 'nope'", f"expected one of: {names}")
    assert sorted(p.name for p in root.iterdir()) == ["params.yaml"]  # nothing created
