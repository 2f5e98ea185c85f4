"""The user documentation names only files that exist, links only to pages that exist, and carries
no development history or pointers outside the repository."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# top-level folders of the repository: a backticked token starting with one of them is a path
TOP = ("ptycho/", "workflow/", "studies/", "tests/", "docs/", "benchmarks/", "experiments/",
       "config/", ".ci/")
PAGES = sorted({REPO / "README.md", REPO / "CHANGELOG.md", *REPO.glob("*/README.md"),
                *REPO.glob("workflow/*/README.md"), *(REPO / "docs").rglob("*.md")})
USER_PAGES = [p for p in PAGES if p.name != "CHANGELOG.md"]  # the changelog is the history


def _missing_paths(page: Path) -> list[str]:
    text, bad = page.read_text(), []
    for m in re.finditer(r"`([^`\s]+)`", text):
        token = m.group(1).rstrip(".,:;")
        if not token.startswith(TOP) or any(c in token for c in "<>{}*$"):
            continue  # not a path, or a pattern with placeholders
        path = token.split("::")[0].split("#")[0]
        if not (REPO / path).exists():
            bad.append(path)
    for m in re.finditer(r"\]\(([^)\s]+)\)", text):
        target = m.group(1).split("#")[0]
        if target and not target.startswith(("http:", "https:", "mailto:")):
            if not (page.parent / target).resolve().exists():
                bad.append(f"link {target}")
    return bad


def test_the_pages_are_found():
    names = {p.relative_to(REPO).as_posix() for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/conventions.md", "docs/reference/study.md",
            "docs/clusters.md", "config/README.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_named_path_exists(page):
    assert _missing_paths(page) == []


def test_the_checker_finds_a_missing_path(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See `ptycho/no_such_module.py` and [this](no_such_page.md); "
                    "`results/<study>/report/` is generated and `ptycho/api.py` exists.\n")
    assert _missing_paths(page) == ["ptycho/no_such_module.py", "link no_such_page.md"]


HISTORY = re.compile(r"\b(sessions?|work periods?)\b|\bissue ?#?\d+|\.\./shared|\bshared/",
                     re.IGNORECASE)


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_user_pages_carry_no_history_and_no_outside_pointers(page):
    hits = [line.strip() for line in page.read_text().splitlines() if HISTORY.search(line)]
    assert hits == []
