"""dvc.yaml declares exactly what each stage reads: its params and the code it imports."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest
import yaml

from pipeline.params import Params

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def expand_stages():
    """(name, stage dict with ${key}/${item.x} filled in, variant or None) for every stage."""
    for name, stage in DVC["stages"].items():
        if "foreach" in stage:
            for key, item in PARAMS["variants"].items():
                text = yaml.safe_dump(stage["do"]).replace("${key}", key)
                text = re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), text)
                yield f"{name}@{key}", yaml.safe_load(text), key
        else:
            yield name, stage, None


STAGES = list(expand_stages())


def module_of(stage: dict) -> str:
    match = re.match(r"python -m (stages\.\w+)", " ".join(stage["cmd"].split()))
    assert match, stage["cmd"]
    return match.group(1)


def project_imports(path: Path) -> set[str]:
    """Files of this project a module imports, transitively (lazy imports inside functions included)."""
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(current.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in ("pipeline", "stages"):
                    candidate = ROOT.joinpath(*name.split(".")).with_suffix(".py")
                    if candidate.is_file():
                        todo.append(candidate)
    return {str(p.relative_to(ROOT)) for p in seen if p.name != "__init__.py"}


@pytest.mark.parametrize("name, stage, variant", STAGES, ids=[s[0] for s in STAGES])
def test_code_deps_are_exactly_the_imported_modules(name, stage, variant):
    module = ROOT / (module_of(stage).replace(".", "/") + ".py")
    declared = {d for d in stage.get("deps", []) if d.endswith(".py")}
    assert declared == project_imports(module)


@pytest.mark.parametrize("name, stage, variant", STAGES, ids=[s[0] for s in STAGES])
def test_params_are_exactly_the_params_read(name, stage, variant):
    declared = set()
    for entry in stage.get("params", []):
        if isinstance(entry, dict):  # `params.yaml:` with no keys = every param: only the validate stage
            assert name == "validate" and entry == {"params.yaml": None}
            from stages.validate import validate

            params = Params(PARAMS)
            validate(params)
            assert {k.split(".")[0] for k in params.accessed} >= {"sources", "variants", "temp", "published"}
            return
        declared.add(entry)
    # values interpolated into the command or outputs are params too (DVC tracks them)
    templated = set(re.findall(r"\$\{([\w.]+)\}", yaml.safe_dump({k: stage[k] for k in ("cmd", "outs")
                                                                  if k in stage})))
    declared |= templated
    module = importlib.import_module(module_of(stage))
    params = Params(PARAMS)
    read = getattr(module, "read_params", None)
    if read is not None:
        if "variant" in inspect.signature(read).parameters:
            read(params, variant)
        else:
            read(params)
    accessed = set(params.accessed)

    def covered(key: str) -> bool:
        return any(key == d or key.startswith(d + ".") for d in declared)

    assert {k for k in accessed if not covered(k)} == set(), "read but not declared"
    unused = {d for d in declared - templated if not any(a == d or a.startswith(d + ".") or d.startswith(a + ".")
                                                         for a in accessed)}
    assert unused == set(), "declared but never read"


def test_every_card_setting_is_a_top_level_param():
    for key in ("model", "epochs", "max_len", "batch_size", "lr", "dropout", "temp", "pooler", "seed"):
        assert key in PARAMS, key
    assert PARAMS["temp"] == 0.05 and PARAMS["lr"] == 5e-5 and PARAMS["batch_size"] == 256
    assert PARAMS["max_len"] == 64 and PARAMS["epochs"] == 1 and PARAMS["pooler"] == "cls"
    assert PARAMS["model"] == "klue/bert-base" and PARAMS["seed"] == 42 and PARAMS["dropout"] == 0.1


def test_temp_is_read_only_by_training():
    """`dvc exp run -S temp=...` must not rerun download or tokenize."""
    readers = {name.split("@")[0] for name, stage, _ in STAGES if "temp" in stage.get("params", [])}
    assert readers == {"train"}


def test_plots_cover_every_variant():
    declared = {next(iter(p)) for p in DVC["plots"]}
    for variant in PARAMS["variants"]:
        assert f"dvclive/{variant}/plots/metrics" in declared
        assert f"eval/{variant}" in declared
