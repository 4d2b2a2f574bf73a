"""No import points back up the layers: each module imports only its own layer and those below it.

A lower layer that needs a value of a higher one gets it moved down to a module both may import (the remote
files to proxy/sources/remote.py, the staging layout to proxy/models_dir/staging.py). Imports under `if TYPE_CHECKING:`
are for annotations only and do not count.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

# Lowest first. A name stands for the module and everything under it; the longest name that matches wins.
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("proxy.errors", "proxy.models_dir.fsutil", "proxy.retry", "proxy.settings", "proxy.metrics", "proxy.services",
     "proxy.routes.openai_fields", "proxy.cli.progress", "proxy.cli.exits"),
    ("proxy.models_dir",),  # the models folder, fsutil below it
    ("proxy.sources",),
    ("proxy.pulls", "proxy.pulls.pulled_names", "proxy.backend.client", "proxy.backend.errors"),
    ("proxy.pushes", "proxy.declared", "proxy.declared.residency_pin", "proxy.ollama", "proxy.backend.upstream", "proxy.routes.auth",
     "proxy.backend.chat", "proxy.backend.dialect", "proxy.anthropic", "proxy.responses"),
    ("proxy.routes", "proxy.openapi.document", "proxy.openapi.ollama", "proxy.app", "proxy.cli.commands", "proxy.gunicorn", "proxy.serving.worker",
     "proxy.__main__", "proxy"),
]
SERVER_LAYERS: list[tuple[str, ...]] = [
    ("server.errors", "server.settings", "server.crash"),
    ("server.engine",),  # slots, the loop, samplers: knows no HTTP and no residency
    ("server.chat",),
    ("server.residency",),
    ("server.api", "server.app", "server.__main__", "server"),
]
LAYERS += SERVER_LAYERS
# The backend and the proxy are separate processes; core is what both share.
APART = {"core": ("proxy", "server"), "server": ("proxy",), "proxy": ("server",)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts).replace(".conf", "")  # proxy/gunicorn.conf.py


def layer_of(module: str) -> int | None:
    matches = [(len(name), index) for index, names in enumerate(LAYERS) for name in names
               if module == name or module.startswith(name + ".")]
    return max(matches)[1] if matches else None


def imports_of(path: Path, source: str, typing_too: bool = False) -> list[tuple[int, str]]:
    """(line, module) of each import that runs: absolute names, relative ones resolved, TYPE_CHECKING skipped
    unless `typing_too`."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(source)
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                   for stmt in node.body for inner in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only and not typing_too:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from a.b import c`: a.b.c, a module or a name in a.b; either way it lies in a.b's layer or a.b.c's.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def upward_imports(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        module = module_name(path)
        own = layer_of(module)
        for line, target in imports_of(path, path.read_text()):
            top = target.partition(".")[0]
            where = f"{path.relative_to(REPO_ROOT)}:{line} imports {target}"
            if top in APART.get(module.partition(".")[0], ()):
                found.append(where + " (another process's code)")
            elif own is not None and (layer_of(target) or 0) > own:
                found.append(where + " (a higher layer)")
    return found


def source_files() -> list[Path]:
    return [path for folder in ("core", "proxy", "server") for path in sorted((REPO_ROOT / folder).rglob("*.py"))]


def import_cycles(paths: list[Path]) -> list[list[str]]:
    """Cycles of modules importing each other, imports for annotations included: each is a knot a reader has
    to hold in mind at once, even when Python can load it."""
    modules = {module_name(path): path for path in paths}

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    graph = {module: {found for _, target in imports_of(path, path.read_text(), typing_too=True)
                      if (found := resolve(target)) and found != module and not module.startswith(found + ".")}
             for module, path in modules.items()}
    cycles, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [module, target] if target in trail else [module, target])
            elif target not in state:
                visit(target, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return cycles


def test_every_module_has_a_layer():
    unplaced = [module_name(p) for p in source_files()
                if module_name(p).startswith(("proxy", "server")) and layer_of(module_name(p)) is None]
    assert unplaced == []


def test_no_modules_import_each_other_even_for_annotations():
    assert import_cycles(source_files()) == []


def test_the_cycle_walk_sees_an_annotation_cycle(tmp_path, monkeypatch):
    sources = {"proxy/one.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from proxy.two import B\n",
               "proxy/two.py": "from proxy.one import A\n"}
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: sources[str(self.relative_to(REPO_ROOT))])
    assert import_cycles([REPO_ROOT / name for name in sources]) == [["proxy.one", "proxy.two", "proxy.one"]]


def test_no_import_points_back_up():
    assert upward_imports(source_files()) == []


@pytest.mark.parametrize("module, source, expected", [
    ("proxy/models_dir/store.py", "from proxy.pulls.install import STAGING",
     "imports proxy.pulls.install.STAGING (a higher layer)"),
    ("proxy/sources/base.py", "from ..pulls import remote", "imports proxy.pulls.remote (a higher layer)"),
    ("proxy/metrics.py", "def f():\n    import proxy.app", "imports proxy.app (a higher layer)"),
    ("core/naming.py", "from server.residency.models import Lease", "imports server.residency.models.Lease (another process's code)"),
])
def test_the_walk_sees_an_upward_import(monkeypatch, module, source, expected):
    path = REPO_ROOT / module
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert [f.split(" ", 1)[1] for f in upward_imports([path])] == [expected]


def test_an_import_for_annotations_only_does_not_count(monkeypatch):
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from proxy.app import create_app\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert upward_imports([REPO_ROOT / "proxy" / "store.py"]) == []


def imports_into(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    """`path:line imports name` for each import of a module under one of the `forbidden` prefixes."""
    return [f"{path.relative_to(REPO_ROOT)}:{line} imports {target}" for path in paths
            for line, target in imports_of(path, path.read_text()) if target.startswith(forbidden)]


def test_scripts_import_nothing_from_tests():
    """The benchmarks and the stack stand on their own; the tests may use scripts/, never the other way round."""
    assert imports_into(sorted((REPO_ROOT / "scripts").glob("*.py")), ("tests.",)) == []


def test_no_test_module_imports_another():
    """Shared helpers and fixtures live in support modules (tests/helpers.py, conftest.py, fakes/...), so running
    or changing one test module never depends on another."""
    assert imports_into(sorted((REPO_ROOT / "tests").rglob("*.py")), ("tests.test_",)) == []


def test_the_import_checks_see_an_import_inside_a_function(monkeypatch):
    source = "import os\n\ndef helper():\n    from tests.test_cli import cli_env\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert imports_into([REPO_ROOT / "tests" / "test_x.py"], ("tests.test_",)) == [
        "tests/test_x.py:4 imports tests.test_cli.cli_env"]
