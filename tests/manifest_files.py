"""Declared-model manifest files for the MODELS_MANIFEST tests: two repos on the fake Hub (the `two_repos`
fixture), manifest files naming them, and the states the app reports for each entry."""
from __future__ import annotations

import pytest

A, B = "acme/alpha-GGUF", "acme/beta-GGUF"
FILE_A, FILE_B = "alpha.Q4_K_M.gguf", "beta.Q4_K_M.gguf"


def write_manifest(path, *entries: str) -> str:
    path.write_text("models:\n" + "".join(entries))
    return str(path)


def entry(model: str, **fields) -> str:
    return f"  - model: {model}  # a comment\n" + "".join(f'    {k}: "{v}"\n' for k, v in fields.items())


def states(client) -> dict[str, dict]:
    return {m["model"]: m for m in client.get("/v1/api/manifest").get_json()["models"]}


@pytest.fixture
def two_repos(hub, make_gguf):
    """A and B on the fake Hub, one file each; the module using it imports `hub` and `make_gguf` from
    tests.pull_fixtures."""
    sources = {FILE_A: make_gguf(FILE_A, 512 * 1024), FILE_B: make_gguf(FILE_B, 512 * 1024)}
    hub.add_repo(A, files={FILE_A: sources[FILE_A]})
    hub.add_repo(B, files={FILE_B: sources[FILE_B]})
    return sources
