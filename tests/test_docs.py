"""The documentation's form: a short README that opens with the Space's front matter, and Markdown
tables that GitHub renders as tables (a header, a separator row second, the same cells in every row).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from models import MODELS
from scripts.paths import REPO

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
README_MAX_LINES = 220
# The keys Hugging Face reads from the front matter to build a Docker Space on port 8080.
FRONT_MATTER_KEYS = ("title", "sdk", "app_port")
SEPARATOR_CELL = re.compile(r"^:?-+:?$")


def cells(row: str) -> list[str]:
    """The cells of a table row as GitHub splits it: at every pipe that is not escaped."""
    inner = row.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", inner)]


def tables(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, rows) of every table outside fenced code: runs of lines starting with a pipe."""
    found: list[tuple[int, list[str]]] = []
    fenced = False
    current: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines() + [""], start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.lstrip().startswith("|"):
            if not current:
                start = number
            current.append(line)
            continue
        if current:
            found.append((start, current))
            current = []
    return found


def table_problems(path: Path, root: Path = REPO) -> list[str]:
    """What is wrong with each table of ``path``, as ``file:line: problem`` strings (paths relative to ``root``)."""
    text = path.read_text()
    lines = text.splitlines()
    problems = []
    for start, rows in tables(text):
        where = f"{path.relative_to(root)}:{start}"
        if start > 1 and lines[start - 2].strip():
            problems.append(f"{where}: a table needs a blank line before it")
        header = cells(rows[0])
        if len(rows) < 2 or not all(SEPARATOR_CELL.match(cell) for cell in cells(rows[1])):
            problems.append(f"{where}: the second row is not a separator row (| --- | --- |)")
            continue
        for offset, row in enumerate(rows[1:], start=1):
            if len(cells(row)) != len(header):
                problems.append(f"{where}: row {offset + 1} has {len(cells(row))} cells, the header {len(header)}")
    return problems


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda path: path.name)
def test_every_table_is_well_formed(path: Path) -> None:
    assert table_problems(path) == []


def test_the_table_check_finds_broken_tables(tmp_path: Path) -> None:
    broken = tmp_path / "broken.md"
    broken.write_text(
        "text\n\n| a | b |\n| a1 | b1 |\n\n"          # no separator row
        "| a | b |\n|---|---|\n| 1 | 2 | 3 |\n\n"    # a row with a cell too many
        "| a \\| b | c |\n|---|---|\n| 1 | 2 |\n\n"   # an escaped pipe stays in its cell
        "```\n| not | a table\n```\n",
    )
    problems = [problem.split(": ", 1)[1] for problem in table_problems(broken, tmp_path)]
    assert problems == ["the second row is not a separator row (| --- | --- |)", "row 3 has 3 cells, the header 2"]


def test_readme_is_short_and_opens_with_the_space_front_matter() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    assert lines[0] == "---"
    end = lines.index("---", 1)
    keys = {line.split(":", 1)[0] for line in lines[1:end]}
    assert set(FRONT_MATTER_KEYS) <= keys
    assert "sdk: docker" in lines[1:end]


def test_readme_says_what_each_endpoint_is_for_as_the_registry_does() -> None:
    rows = {cells(row)[0]: cells(row) for _, table in tables(README.read_text()) for row in table}
    for name, spec in MODELS.items():
        row = rows[f"`POST /predictions/{name}`"]
        assert row[1].startswith(spec.title) and row[2] == spec.role, row
