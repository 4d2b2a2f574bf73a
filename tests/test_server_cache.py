"""Prompt-prefix reuse stays correct with the sliding-window KV cache (SWA_FULL off, the default)."""
from __future__ import annotations

import pytest

from server.app import create_app
from server.settings import Settings
from tests.gemma_models import gemma_folder


@pytest.fixture(scope="module")
def client(tmp_path_factory, gemma_gguf):
    folder = gemma_folder(gemma_gguf, tmp_path_factory.mktemp("cache-models"))
    # A small batch keeps the window cache small (window + batch), so one long prompt overflows it.
    app = create_app(Settings(models_dir=str(folder), n_ctx=2048, n_batch=64))
    yield app.test_client()
    app.extensions["backend"].residency.close()


def test_prefix_pushed_out_of_the_window_is_not_reused(client):
    long_prompt = "Here is a list: " + " ".join(f"item{i}" for i in range(300))  # ~1100 tokens
    probe = {"model": "gemma-3-270m", "prompt": long_prompt[:200] + " The end. Now a poem about cats:",
             "max_tokens": 12, "temperature": 0}

    before = client.post("/v1/completions", json=probe).get_json()["choices"][0]["text"]
    client.post("/v1/completions", json={"model": "gemma-3-270m", "prompt": long_prompt, "max_tokens": 1})
    after = client.post("/v1/completions", json=probe).get_json()["choices"][0]["text"]

    # llama-cpp-python alone would reuse the shared start from a cache that no longer holds it.
    assert after == before
