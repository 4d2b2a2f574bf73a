"""docs/operations.md's code layout is a true map: one line for every module, package and script, and no line
naming a path that is not there."""
from __future__ import annotations

import re

from tests.helpers import REPO_ROOT

OPERATIONS = REPO_ROOT / "docs" / "operations.md"
MAPPED = ("core", "proxy", "server", "scripts")


def code_layout_paths(text: str) -> list[str]:
    """The path each line of the "Code layout" section's code block starts with."""
    section = text.split("\n## Code layout\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"(?ms)^```\n(.*?)^```", section).group(1)
    return [line.split()[0] for line in block.splitlines() if line.strip()]


def tree_paths() -> set[str]:
    """Every module and script, and every package as its folder with a trailing slash."""
    found = set()
    for top in MAPPED:
        for path in (REPO_ROOT / top).rglob("*"):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if "__pycache__" in relative:
                continue
            if path.name == "__init__.py":
                found.add(relative.removesuffix("__init__.py"))
            elif path.suffix in (".py", ".sh"):
                found.add(relative)
    return found


def test_every_module_and_script_has_a_line():
    named = set(code_layout_paths(OPERATIONS.read_text()))
    assert sorted(tree_paths() - named) == []


def test_every_path_named_exists():
    missing = [p for p in code_layout_paths(OPERATIONS.read_text()) if not (REPO_ROOT / p).exists()]
    assert missing == []


def test_the_map_reads_the_code_block_of_its_section():
    text = "# Ops\n\n## Code layout\n\nOne line a module.\n\n```\ncore/        shared\n  core/a.py  a\n```\n\n## Next\n"
    assert code_layout_paths(text) == ["core/", "core/a.py"]
