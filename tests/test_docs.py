"""The reference in the repository stays true to the code: every error code and every setting is in
docs/api.md, and no link in README.md or docs/ leaves the repository or points at a file or heading that is
not there (a clone has nothing outside itself)."""
from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from core.errors import ErrorCode
from tests.helpers import REPO_ROOT

API_DOC = REPO_ROOT / "docs" / "api.md"
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SETTINGS_MODULES = ["proxy/settings.py", "server/settings.py"]
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>\s]+)>")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def settings_variables(relative: str) -> dict[str, str]:
    """Variable -> field name of every setting a settings module reads from the environment, as core/env.py
    declares them (`setting(default, "VAR", help)` in the field's metadata). The file is loaded on its own:
    importing the server package would load llama.cpp."""
    name = "settings_under_test_" + relative.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses looks the module up while building the class
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return {f.metadata["env"]: f.name for f in dataclasses.fields(module.Settings) if f.metadata.get("env")}


def without_code_blocks(text: str) -> str:
    return re.sub(r"(?ms)^(```|~~~).*?^\1[^\n]*$", "", text)


def prose(text: str) -> str:
    """`text` without fenced code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", without_code_blocks(text))


def links(text: str) -> list[str]:
    body = prose(text)
    return INLINE_LINK.findall(body) + REFERENCE_LINK.findall(body) + AUTOLINK.findall(body)


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    found = set()
    for heading in re.findall(r"(?m)^#{1,6}\s+(.+?)\s*#*\s*$", without_code_blocks(path.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")  # code spans keep their text
        candidate, n = slug, 1
        while candidate in found:
            candidate, n = f"{slug}-{n}", n + 1
        found.add(candidate)
    return found


def link_problems(doc: Path, root: Path = REPO_ROOT) -> list[str]:
    """Links that leave the repository at `root`, or point at a file or heading that does not exist."""
    problems = []
    for target in links(doc.read_text()):
        where = f"{doc.relative_to(root)}: {target!r}"
        if not target or SCHEME.match(target) or target.startswith("//"):
            problems.append(f"{where} leaves the repository")
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (doc.parent / path_part).resolve() if path_part else doc
        if root.resolve() not in (resolved, *resolved.parents):
            problems.append(f"{where} points outside the repository")
        elif not resolved.exists():
            problems.append(f"{where} points at a file that does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where} points at a heading that does not exist")
    return problems


def test_every_error_code_is_in_the_api_reference():
    text = API_DOC.read_text()
    assert [code.value for code in ErrorCode if f"`{code.value}`" not in text] == []


@pytest.mark.parametrize("module", SETTINGS_MODULES)
def test_every_setting_is_in_the_api_reference(module):
    variables = settings_variables(module)
    assert "MODELS_DIR" in variables and len(variables) >= 15  # the settings were really read
    text = API_DOC.read_text()
    assert sorted(variable for variable in variables if f"`{variable}`" not in text) == []


def test_every_proxy_route_is_in_the_api_reference(make_app):
    """Each route of the proxy app, its parameters written `<id>` or `{id}` (Flask's own /static aside)."""
    text = API_DOC.read_text()
    rules = [rule.rule for rule in make_app().url_map.iter_rules() if rule.endpoint != "static"]
    missing = []
    for rule in rules:
        pattern = re.sub(r"<[^>]+>", lambda _: r"(?:<[^>]+>|\{[^}]+\})", re.escape(rule).replace(r"\<", "<").replace(r"\>", ">"))
        if not re.search(rf"(?<![\w/]){pattern}(?![\w/])", text):
            missing.append(rule)
    assert len(rules) >= 30 and missing == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_no_link_leaves_the_repository_or_points_at_nothing(doc):
    assert link_problems(doc) == []


@pytest.fixture
def repo(tmp_path) -> Path:
    """A small repository: a README and docs/operations.md with one heading."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "operations.md").write_text("# Operations\n\n## Probes\n")
    return tmp_path


@pytest.mark.parametrize("broken, problem", [
    ("see [the contract](../shared/API.md)", "points outside the repository"),
    ("see [the Hub](https://huggingface.co)", "leaves the repository"),
    ("see <https://example.com/x>", "leaves the repository"),
    ("see [ops](docs/nothing.md)", "file that does not exist"),
    ("see [ops](docs/operations.md#no-such-heading)", "heading that does not exist"),
    ("[ref]: http://example.com", "leaves the repository"),
])
def test_the_link_check_finds_each_kind_of_bad_link(repo, broken, problem):
    (repo / "README.md").write_text(f"# Title\n\n{broken}\n\nsee [probes](docs/operations.md#probes)\n")
    found = link_problems(repo / "README.md", repo)
    assert len(found) == 1 and problem in found[0], found


def test_code_spans_and_blocks_are_not_links(repo):
    (repo / "README.md").write_text("```sh\ncurl [x](http://127.0.0.1:8080)\n```\nand `[y](https://a.example)`\n")
    assert link_problems(repo / "README.md", repo) == []
