"""The README and docs/ pages: relative links resolve, the README stays short, its code runs.

A relative link (``[text](path)``, ``[text](path#anchor)``, ``[text](#anchor)``, images too)
must name an existing file, and an anchor must be one of the headings of the Markdown page it
points to, spelled as GitHub spells heading anchors. Links inside fenced code blocks and to
``http(s)://`` / ``mailto:`` are not checked. Every docs page must be reachable from the README.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 250

_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def doc_pages(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/ (the generated docs/api is HTML)."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to '-'."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(text):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))     # a link keeps its text
        slug = re.sub(r"[^\w\- ]", "", title.replace("`", "").lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of ``page`` whose file or anchor does not exist, as 'page:line: target'."""
    problems = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        for target in _LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):        # http:, https:, mailto:
                continue
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(root)}:{number}: {target}"
            if not dest.exists():
                problems.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in heading_anchors(dest.read_text(encoding="utf-8")):
                problems.append(f"{where} (no heading with anchor #{anchor} in {dest.name})")
    return problems


def linked_pages(page: Path) -> set[Path]:
    """The Markdown files ``page`` links to (relative links only)."""
    out = set()
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        for target in _LINK.findall(line):
            path_part = target.partition("#")[0]
            if path_part.endswith(".md") and not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                out.add((page.parent / path_part).resolve())
    return out


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_checker_finds_a_broken_file_and_anchor(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Some `code` heading\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[ok](docs/a.md#some-code-heading) [bad file](docs/b.md) [bad anchor](docs/a.md#nope)\n"
        "```\n[in code](docs/missing.md)\n```\n[web](https://example.org/x.md) [self](#title-here)\n"
        "# Title here\n",
        encoding="utf-8",
    )
    problems = broken_links(readme, root=tmp_path)
    assert len(problems) == 2, problems
    assert "docs/b.md (no such file)" in problems[0]
    assert "#nope" in problems[1]


def test_heading_anchors_follow_github():
    text = "# 10,000 networks on an H100\n## `regress`: accuracy (zoos)\n## Same\n## Same\n"
    assert heading_anchors(text) == {"10000-networks-on-an-h100", "regress-accuracy-zoos", "same", "same-1"}


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the limit is {README_MAX_LINES}: move detail to docs/"


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in reached or not page.exists():
            continue
        reached.add(page)
        todo.extend(linked_pages(page))
    unreached = [str(p.relative_to(ROOT)) for p in doc_pages() if p.resolve() not in reached]
    assert unreached == [], f"docs pages no link from README.md leads to: {unreached}"


def test_readme_quick_start_is_what_ci_runs():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(ci) == 1, ".ci/run should hold one 'python3 -m venv ...' command"
    assert ci[0] in README.read_text(encoding="utf-8").splitlines(), "the README's test command differs from .ci/run's"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)                       # anything a block writes lands here
    for code in blocks:
        exec(compile(code, "README.md (python block)", "exec"), {"__name__": "readme_example"})


def test_graph_format_table_is_the_schema():
    from neuralgraph.schema import FIELDS

    text = (ROOT / "docs" / "graph-format.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| (node|edge|graph) \| `([^`]*)` \|", text, flags=re.M)
    documented = {name: (level, shape) for name, level, shape in rows}
    expected = {name: (field.level, field.shape) for name, field in FIELDS.items()}
    assert documented == expected, "docs/graph-format.md's field table differs from neuralgraph.schema.FIELDS"
