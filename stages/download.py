"""Stage `download`: fetch the data sources this run reads, verify their sha256, validate them, record a manifest.

    python -m stages.download --out data/raw

The benchmarks are always fetched; of the training sources only those that
`corpus.from` and `triplets.from` build from (pipeline.sources). Writes
data/raw/<key>.<ext> for each of them and data/raw/manifest.json (source URL,
revision, sha256, whether the hash was pinned, size, row counts).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.atomic import atomic_dir, write_json
from pipeline.download import fetch, resolve_source
from pipeline.provenance import Timer, write_timing
from pipeline.errors import UserError, cli_entry
from pipeline.params import Params
from pipeline.sources import SOURCES, resolved_sources


def read_params(params: Params) -> tuple[dict, list[str]]:
    """(the `sources` mapping with ``source_roots`` filled into each URL, the keys this run fetches)."""
    sources = resolved_sources(params)
    return sources, list(sources)


def download_all(sources: dict, out: Path, needed: list[str] | None = None) -> dict:
    """Fetch, verify and validate the ``needed`` sources (default: all) into ``out`` atomically; return the manifest."""
    with atomic_dir(out) as tmp:
        files = {}
        for key in needed or list(SOURCES):
            name, validate = SOURCES[key]
            entry = sources[key]
            revision = entry.get("revision")
            url = resolve_source(entry["url"], revision)
            fetched = fetch(url, tmp / name, sha256=entry.get("sha256"))
            try:
                counts = validate(tmp / name)
            except UserError as exc:
                # the parser names the temporary copy, which is gone once this fails: name the source
                raise UserError(f"sources.{key}: " + str(exc).replace(str(tmp / name), url)) from None
            if not fetched.pinned:
                print(f"warning: sources.{key}: no sha256 pinned; recorded {fetched.sha256} "
                      "(pin it in params.yaml to verify future downloads)", flush=True)
            files[key] = {
                "file": name,
                # as written in params (revision filled in), never a machine-specific absolute path
                "source": entry["url"].replace("{revision}", revision or ""),
                "revision": revision,
                "sha256": fetched.sha256,
                "sha256_pinned": fetched.pinned,
                "bytes": fetched.bytes,
                **counts,
            }
            print(f"{key}: {name} {fetched.bytes} bytes, sha256 {fetched.sha256[:12]}..., {counts}", flush=True)
        manifest = {"files": files}
        write_json(tmp / "manifest.json", manifest)
    return manifest


@cli_entry
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timing", type=Path)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    with Timer() as timer:
        sources, needed = read_params(Params.load(args.params))
        download_all(sources, args.out, needed)
    write_timing(args.timing, "download", timer.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
