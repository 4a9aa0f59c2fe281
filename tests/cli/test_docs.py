"""README.md and docs/: short, linked, runnable, and about the package only."""

import os
import re
import subprocess
import sys

import keras
import pytest

from tests.processes import HANG, ROOT

README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
README_MAX_CHARS = 10_000
SET_UP_COMMANDS = (
    "pip install -r requirements.txt && python main.py --dataset digits",
    "python -m pip install -r requirements-dev.txt && python -m pytest -n 2",
)
# Words about how the project was made rather than what it is. The last
# alternative is spelled with \s so that this file does not match itself.
DEVELOPMENT_HISTORY = re.compile(r"\bsessions?\b|\bissues?\b|\.\./shared|shared\sdesign", re.I)
# Folders that are not the project's own text: version control, virtual
# environments (any folder with a pyvenv.cfg), caches, run outputs.
SKIPPED_FOLDERS = {".git", ".venv", "venv", "checkpoints", "__pycache__", ".pytest_cache",
                   ".whl", "build", "dist", "samples", "evaluation"}

FENCED_CODE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def links(path):
    """The targets of the markdown links in `path`, outside code."""
    text = INLINE_CODE.sub("", FENCED_CODE.sub("", path.read_text()))
    return LINK.findall(text)


def anchors(path):
    """GitHub's heading anchors of a markdown file: lower case, punctuation dropped, - for spaces."""
    text = FENCED_CODE.sub("", path.read_text())
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


def project_text_files():
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [
            name for name in subfolders
            if name not in SKIPPED_FOLDERS and not name.endswith(".egg-info")
            and not os.path.exists(os.path.join(folder, name, "pyvenv.cfg"))
        ]
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                content = f.read()
            if b"\0" in content[:8192]:  # binary, as grep -I decides
                continue
            yield path, content.decode("utf-8", errors="replace")


def test_the_readme_is_short():
    length = len(README.read_text())
    assert length <= README_MAX_CHARS, (
        f"README.md has {length} characters; keep it under {README_MAX_CHARS} and move "
        "reference material to docs/."
    )


def test_the_readme_gives_the_set_up_commands_verbatim():
    readme = README.read_text()
    for command in SET_UP_COMMANDS:
        assert command in readme


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_relative_links_point_at_files_and_headings_that_exist(page):
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to {target!r}, but {linked} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), (
                f"{page.name}: link to {target!r}, but {linked.name} has no heading "
                f"with the anchor #{anchor}"
            )


def test_the_readme_links_every_docs_page():
    linked = {(README.parent / target.partition("#")[0]).resolve() for target in links(README)}
    assert PAGES and not set(PAGES) - linked, "README.md does not link " + ", ".join(
        page.name for page in sorted(set(PAGES) - linked)
    )


def test_no_file_speaks_of_how_the_project_was_developed():
    hits = [
        f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}"
        for path, text in project_text_files()
        for number, line in enumerate(text.splitlines(), 1)
        if DEVELOPMENT_HISTORY.search(line)
    ]
    assert not hits, "Say what the package is, not how it was made:\n" + "\n".join(hits)


def test_the_history_pattern_finds_what_it_is_for():
    # Each example is split in two so that this file itself stays clean.
    for line in ("the speed Iss" "ue 5", "a sess" "ion", "see ../sha" "red/x", "the shared" " design"):
        assert DEVELOPMENT_HISTORY.search(line), line
    assert not DEVELOPMENT_HISTORY.search("a sessionless, issue_tracker-free line")


@pytest.mark.slow
def test_the_readme_quickstart_runs_as_written():
    section = README.read_text().split("## Quickstart", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run(
        [sys.executable, "-c", example], cwd=ROOT, capture_output=True, text=True, timeout=HANG,
        env={**os.environ, "KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bits_per_dim = float(result.stdout.strip().splitlines()[-1])
    # Two epochs take the untrained flow well below 4 bits (uniform over 16 levels).
    assert 0 < bits_per_dim < 4, bits_per_dim


def tables(path):
    """The markdown tables of `path` outside code: [(header line, [row lines])]."""
    text = FENCED_CODE.sub("", path.read_text())
    found = []
    for block in re.findall(r"(?:^\|.*\|[ \t]*\n?)+", text, re.M):
        lines = [line.strip() for line in block.strip().splitlines()]
        found.append((lines[0], lines[2:]))
    return found


def test_the_readmes_figures_are_rows_of_the_docs_tables():
    """A README table of figures repeats rows of a docs table with the same columns.

    So a figure is measured and explained in one place (docs/), and the
    README, which quotes it, cannot drift from it.
    """
    in_docs = {}
    for page in PAGES:
        for header, rows in tables(page):
            in_docs.setdefault(header, []).extend((page.name, row) for row in rows)
    quoted = [(header, rows) for header, rows in tables(README) if re.search(r"\d", str(rows))]
    assert quoted, "README.md: expected a table of measured figures"
    for header, rows in quoted:
        assert header in in_docs, f"README.md: no table in docs/ has the columns {header}"
        docs_rows = {row for _, row in in_docs[header]}
        for row in rows:
            assert row in docs_rows, (
                f"README.md: the row {row} is in no docs table with the columns {header}; "
                f"the docs have {sorted(docs_rows)}"
            )
