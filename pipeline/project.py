"""A DVC project of its own, made from this repository: what `make smoke` and `make rehearsal` run in.

The project is a copy of the repository's git-visible files (not ``reports/``
or ``build/``) with a ``params.yaml`` merged from the repository's and an
overlay (the committed params.yaml is never modified), and its own git
repository with a fixed author and date, so commit ids depend only on the
files: one commit of the project, then one of the pipeline's results, which
``dvc exp run`` / ``dvc exp show`` compare against. The same dvc.yaml and stage
modules run there; the report is then copied back into this repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline import yamlio
from pipeline.errors import UserError
from pipeline.provenance import code_version

ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {"GIT_AUTHOR_NAME": "simcse-ko", "GIT_AUTHOR_EMAIL": "simcse-ko@localhost",
           "GIT_COMMITTER_NAME": "simcse-ko", "GIT_COMMITTER_EMAIL": "simcse-ko@localhost",
           "GIT_AUTHOR_DATE": "2024-01-01T00:00:00+00:00", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00+00:00"}


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` on top of ``base``; mappings merge key by key, except `variants`, replaced whole."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "variants":
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> dict:
    """A params mapping from ``path`` (an empty file is {}); a missing or malformed file is a :class:`UserError`."""
    from pipeline.params import load_mapping

    return load_mapping(path, allow_empty=True)


def project_files(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files of the repository, minus generated reports."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=root, capture_output=True, check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        raise UserError(f"{root}: not a git checkout; the project is made of its git-visible files") from None
    return sorted(f for f in listed if f and not f.startswith(("reports/", "build/")) and (root / f).is_file())


def project_env() -> dict[str, str]:
    """Environment of a project run: offline, this interpreter's tools first on PATH, fixed hashing."""
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "DVC_NO_ANALYTICS": "1", "PYTHONHASHSEED": "0"})
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.pop("PYTHONPATH", None)
    return env


def copy_project(root: Path, target: Path) -> Path:
    """Replace ``target`` with a copy of the repository's project files; return it."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for rel in project_files(root):
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest)
    return target


def name_repository_commit(params: dict, root: Path) -> None:
    """Record the repository's commit (and whether its tree was dirty) as param ``report_code``: the
    project's own git commit exists only inside the project, so its report names this one instead."""
    code = code_version(root)
    if code["commit"]:
        params["report_code"] = {"commit": code["commit"], "dirty": bool(code["dirty"])}


def merged_params(root: Path, *overlays: Path) -> dict:
    """The repository's params.yaml with each overlay file merged on top in turn (:func:`deep_merge`)."""
    merged = read_yaml(root / "params.yaml")
    for overlay in overlays:
        merged = deep_merge(merged, read_yaml(overlay))
    return merged


def write_params(target: Path, params: dict, header: str) -> None:
    """Write the project's params.yaml: a comment ``header`` (saying where it comes from), then ``params``
    as DVC writes them (:func:`pipeline.yamlio.dump`), so that DVC's round trip (`dvc exp run -S`) leaves
    every line but the one it sets as it is."""
    (target / "params.yaml").write_text(header + yamlio.dump(params), encoding="utf-8")


def init_git(project: Path, message: str) -> None:
    """Make the project its own git repository, with everything in one first commit."""
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, env={**project_env(), **GIT_ENV}, check=True)
    commit(project, message)


def commit(project: Path, message: str) -> None:
    """Commit everything in the project (fixed author and date: the id depends only on the files)."""
    env = {**project_env(), **GIT_ENV}
    subprocess.run(["git", "add", "-A"], cwd=project, env=env, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=project, env=env, check=True)


def run_pipeline(project: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """``dvc repro`` (or another dvc command) in the project, with this interpreter's dvc; ``env`` is
    added to :func:`project_env` (the smoke run's loopback hub)."""
    cmd = [sys.executable, "-m", "dvc", *(args or ("repro",))]
    if subprocess.run(cmd, cwd=project, env={**project_env(), **(env or {})}).returncode != 0:
        raise UserError(f"{project}: `dvc {' '.join(cmd[3:])}` failed (its output is above)")


def publish_report(project: Path, report_dir: str, dest: Path) -> None:
    """Copy the project's report folder into this repository (atomically)."""
    from pipeline.atomic import atomic_dir

    src = project / report_dir
    if not (src / "README.md").is_file():
        raise UserError(f"{src}: the run wrote no report")
    with atomic_dir(dest) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def run_and_publish(project: Path, reports: Path, what: str, env: dict[str, str] | None = None) -> Path:
    """Run the whole pipeline in ``project``, commit its results, copy its report to ``reports``; return that."""
    run_pipeline(project, env=env)
    # the results become the baseline that `dvc exp run` / `dvc exp show` compare against
    commit(project, f"{what}: dvc.lock, metrics and reports")
    report_dir = read_yaml(project / "params.yaml")["report_dir"]
    dest = reports if reports.is_absolute() else ROOT / reports
    publish_report(project, report_dir, dest)
    return dest
