"""The documentation: the README stays a front page, every relative link lands, and the licence and
citation files say what pyproject.toml and the docs say."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 150
# a markdown inline link: [text](target), the target without spaces (titles are not used here)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
COMMENT = re.compile(r"<!--.*?-->", re.S)


def doc_files() -> list[Path]:
    """The markdown files whose links must resolve: README, CONTRIBUTING, CHANGELOG and docs/*.md."""
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md",
            *sorted((ROOT / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """Markdown without code blocks, inline code and HTML comments (their brackets are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", COMMENT.sub("", text)))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, GitHub's -1, -2 suffixes for repeated headings included."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6} (.+)", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(path: Path) -> list[str]:
    """``file: target (why)`` for each relative link of ``path`` that names no existing file or anchor."""
    broken = []
    for target in LINK.findall(prose(path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not checked offline
            continue
        name, _, anchor = target.partition("#")
        dest = (path.parent / name).resolve() if name else path
        if not dest.exists():
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    return broken


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    for command in ("make smoke", "make test"):
        assert command in text


def test_every_docs_page_is_listed_in_the_readme():
    linked = set(LINK.findall(prose((ROOT / "README.md").read_text(encoding="utf-8"))))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages and pages <= {t.partition("#")[0] for t in linked}


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_link_checker_finds_a_broken_file_and_anchor(tmp_path, monkeypatch):
    # the checker itself: a missing file and a missing heading are reported, links in code are not
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Top Part (`x`)\n\n## Same\n\n## Same\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#top-part-x) [dup](a.md#same-1) [gone](c.md) [bad](a.md#nope) "
                    "`[code](c.md)` [web](https://example.org/x)\n```\n[fenced](c.md)\n```\n", encoding="utf-8")
    assert broken_links(page) == ["b.md: c.md (no such file)", "b.md: a.md#nope (no such heading)"]


def test_citation_cff_has_the_required_keys_and_references():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    for key in ("cff-version", "message", "title", "authors"):  # required by the CFF 1.2.0 schema
        assert cff[key]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert cff["license"] == project["license"] and cff["version"] == project["version"]
    titles = " | ".join(ref["title"] for ref in cff["references"])
    for work in ("SimCSE: Simple Contrastive", "SimCSE-KO", "KorNLI and KorSTS", "KLUE:", "XNLI:"):
        assert work in titles


def test_license_file_is_the_declared_licence():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert project["license"] == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a notice
