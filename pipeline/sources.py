"""The data sources of the pipeline: what each file is, where it comes from, how it is checked.

``params.yaml`` lists each source under ``sources.<key>`` with a URL (or local
path), a pinned revision and, where known, a sha256. A URL may start with a
``{<root>}`` placeholder naming an entry of ``source_roots`` (a shared URL
prefix): that keeps every line of params.yaml short enough that DVC's YAML
round trip (``dvc exp run -S``) does not rewrap it. The key fixes the file's
name under data/raw and the parser that validates it right after download, so
a malformed benchmark fails in the download stage, not after hours of training.

Only the sources the run needs are fetched: the benchmarks always, plus the
inputs of the chosen unsupervised corpus (`corpus.from`) and supervised
triplets (`triplets.from`). The full run builds from the 1M-sentence corpus and
KorNLI train; the CPU rehearsal from KorSTS train + XNLI-ko dev and XNLI-ko test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterable

from pipeline import data
from pipeline.errors import UserError
from pipeline.params import check_choice

#: ``{name}`` in a source URL: a ``source_roots`` entry, or ``{revision}`` (filled by the download).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _corpus_counts(path: Path) -> dict[str, int]:
    corpus = data.read_corpus(path)
    return {"rows": len(corpus.sentences), "blank_lines": corpus.blank_lines}


def _korsts_counts(path: Path) -> dict[str, int]:
    return {"rows": len(data.read_korsts(path))}


def _klue_counts(path: Path) -> dict[str, int]:
    return {"rows": len(data.read_klue_sts(path))}


def _kornli_counts(path: Path) -> dict[str, int]:
    return {"rows": len(data.read_kornli(path))}


#: key -> (file name under data/raw, validator returning row counts for the manifest)
SOURCES: dict[str, tuple[str, Callable[[Path], dict[str, int]]]] = {
    "corpus": ("corpus.txt", _corpus_counts),
    "korsts_train": ("korsts_train.tsv", _korsts_counts),
    "korsts_dev": ("korsts_dev.tsv", _korsts_counts),
    "korsts_test": ("korsts_test.tsv", _korsts_counts),
    "klue_dev": ("klue_dev.json", _klue_counts),
    "kornli_mnli": ("kornli_mnli.tsv", _kornli_counts),
    "kornli_snli": ("kornli_snli.tsv", _kornli_counts),
    "xnli_dev": ("xnli_dev.tsv", _kornli_counts),
    "xnli_test": ("xnli_test.tsv", _kornli_counts),
}

#: Fetched by every run: KorSTS dev (model selection), KorSTS test and KLUE-STS dev (evaluation), KorSTS train.
BENCHMARK_SOURCES = ("korsts_train", "korsts_dev", "korsts_test", "klue_dev")
#: `corpus.from` -> the sources the unsupervised corpus is built from.
CORPUS_FROM = {"wiki": ("corpus",), "korsts_xnli": ("korsts_train", "xnli_dev")}
#: `triplets.from` -> the NLI sources the supervised triplets are built from.
TRIPLETS_FROM = {"kornli_train": ("kornli_mnli", "kornli_snli"), "xnli_test": ("xnli_test",)}


def needed_sources(corpus_from: str, triplets_from: str) -> list[str]:
    """The source keys a run with these builders reads, in :data:`SOURCES` order."""
    wanted = set(BENCHMARK_SOURCES) | set(CORPUS_FROM[corpus_from]) | set(TRIPLETS_FROM[triplets_from])
    return [key for key in SOURCES if key in wanted]


def file_name(key: str) -> str:
    """File name of source ``key`` under data/raw."""
    return SOURCES[key][0]


def check_roots(roots: Any, where: str = "params.yaml") -> dict[str, str]:
    """Validate ``source_roots`` (absent or empty = none): a mapping of placeholder name -> URL prefix."""
    if roots in (None, {}):
        return {}
    if not isinstance(roots, dict) or not all(isinstance(v, str) and v for v in roots.values()):
        raise UserError(f"{where}: source_roots must map a name to a URL prefix (used as {{name}} in sources.*.url)")
    bad = [k for k in roots if not PLACEHOLDER.fullmatch(f"{{{k}}}") or k == "revision"]
    if bad:
        raise UserError(f"{where}: source_roots.{bad[0]}: expected a name of letters, digits and _ "
                        "(not 'revision', which each source sets itself)")
    return roots


def source_url(key: str, url: str, roots: dict[str, str], where: str = "params.yaml") -> str:
    """``sources.<key>.url`` with its ``{<root>}`` placeholders filled from ``roots``; ``{revision}`` stays."""
    def fill(match: re.Match) -> str:
        name = match.group(1)
        if name == "revision":
            return match.group(0)
        if name not in roots:
            known = ", ".join(sorted(roots)) or "none defined"
            raise UserError(f"{where}: sources.{key}.url = {url!r}: unknown placeholder {{{name}}}; "
                            f"expected {{revision}} or a source_roots entry ({known})")
        return roots[name]

    return PLACEHOLDER.sub(fill, url)


def check_sources(sources: Any, where: str = "params.yaml", roots: Any = None,
                  needed: Iterable[str] | None = None) -> dict[str, dict]:
    """Validate the ``sources`` mapping: every ``needed`` key (default: every known source) present;
    each entry with a url whose placeholders are ``{revision}`` or ``source_roots`` names (``roots``),
    revision a string or null, sha256 64 hex or null; no unknown key."""
    roots = check_roots(roots, where)
    if not isinstance(sources, dict):
        raise UserError(f"{where}: sources must be a mapping of source name -> {{url, revision, sha256}}")
    needed = list(SOURCES if needed is None else needed)
    missing = [k for k in needed if k not in sources]
    if missing:
        raise UserError(f"{where}: sources.{missing[0]} is missing; this run reads {', '.join(needed)}")
    unknown = [k for k in sources if k not in SOURCES]
    if unknown:
        raise UserError(f"{where}: sources.{unknown[0]} is not a known source; expected {', '.join(SOURCES)}")
    for key, entry in sources.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str) or not entry["url"]:
            raise UserError(f"{where}: sources.{key}.url must be a URL or a local path")
        source_url(key, entry["url"], roots, where)
        revision = entry.get("revision")
        if revision is not None and not isinstance(revision, str):  # YAML reads `1.0` as a float
            raise UserError(f"{where}: sources.{key}.revision = {revision!r}: expected a string "
                            "(a commit, tag or branch; quote it in YAML) or null")
        sha = entry.get("sha256")
        if sha is not None and (not isinstance(sha, str) or len(sha) != 64
                                or any(c not in "0123456789abcdefABCDEF" for c in sha)):
            raise UserError(f"{where}: sources.{key}.sha256 = {sha!r}: expected 64 hex characters or null")
    return sources


def resolved_sources(params, needed: Iterable[str] | None = None) -> dict[str, dict]:
    """The sources a run reads, from a :class:`pipeline.params.Params`: validated, with ``source_roots``
    filled into each URL (``{revision}`` is left for the download to fill).

    Args:
        needed: the source keys the run reads; default :func:`needed_sources` of the params'
            ``corpus.from`` and ``triplets.from`` (read through ``params``, so they count as read).
    """
    if needed is None:
        src = params.source
        needed = needed_sources(check_choice(src, "corpus.from", params.get("corpus.from"), CORPUS_FROM),
                                check_choice(src, "triplets.from", params.get("triplets.from"), TRIPLETS_FROM))
    needed = list(needed)
    roots = params.get("source_roots", {})
    sources = check_sources(params.get("sources"), params.source, roots, needed)
    roots = check_roots(roots, params.source)
    return {key: {**sources[key], "url": source_url(key, sources[key]["url"], roots, params.source)}
            for key in needed}
