"""A `verify: "load"` pull leaves the backend's loaded models as it found them: real backend and proxy processes
on the real Gemma 3 270M, its copies under other names being other models."""
from __future__ import annotations

import contextlib
import json

import pytest
import requests

import scripts.stack
from tests.fakes.hub import FakeHub
from tests.gemma_models import gemma_folder

REPO = "google/gemma-3-270m-GGUF"
PULLED = "gemma-3-270m-Q4_K_M"  # the model the pull installs and smoke-tests
SERVING, OTHER = "serving-Q4_K_M", "other-Q4_K_M"  # copies of the same file put in MODELS_DIR by hand


@pytest.fixture(scope="module")
def hub(gemma_gguf):
    with FakeHub() as fake:
        fake.add_repo(REPO, files={gemma_gguf.name: gemma_gguf})
        yield fake


@contextlib.contextmanager
def stack(tmp_path, hub, gemma_gguf, max_loaded: int):
    """Backend (MAX_LOADED_MODELS=max_loaded) and proxy over a MODELS_DIR holding SERVING and OTHER; the
    proxy's URL and the backend's."""
    models = gemma_folder(gemma_gguf, tmp_path / "models", SERVING, OTHER)
    backend_env = {"MAX_LOADED_MODELS": str(max_loaded), "N_CTX": "512"}
    with scripts.stack.backend(models, tmp_path, backend_env) as backend_url, \
            scripts.stack.proxy(models, tmp_path, hub.url, backend_url) as (proxy_url, _):
        yield proxy_url, backend_url


def generate(proxy_url: str, model: str) -> None:
    answer = requests.post(proxy_url + "/v1/generate", json={"model": model, "prompt": "Hi", "max_tokens": 2},
                           timeout=120)
    assert answer.status_code == 200, answer.text


def loaded(backend_url: str) -> list[str]:
    """The backend's loaded models, least recently used first."""
    return requests.get(backend_url + "/health", timeout=10).json()["models"]["loaded_ids"]


def pull_with_smoke_test(proxy_url: str) -> list[dict]:
    with requests.post(proxy_url + "/v1/api/pull", json={"model": REPO, "verify": "load"}, stream=True,
                       timeout=300) as response:
        assert response.status_code == 200, response.text
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [line["status"] for line in lines][-2:] == ["smoke_test", "complete"], lines[-3:]
    return lines


def test_smoke_test_with_one_slot_loads_the_serving_model_back_before_complete(tmp_path, hub, gemma_gguf):
    with stack(tmp_path, hub, gemma_gguf, max_loaded=1) as (proxy_url, backend_url):
        generate(proxy_url, SERVING)

        pull_with_smoke_test(proxy_url)

        assert loaded(backend_url) == [SERVING]
        generate(proxy_url, SERVING)
        assert loaded(backend_url) == [SERVING]


def test_smoke_test_with_room_for_both_evicts_nothing_and_goes_first_later(tmp_path, hub, gemma_gguf):
    with stack(tmp_path, hub, gemma_gguf, max_loaded=2) as (proxy_url, backend_url):
        generate(proxy_url, SERVING)

        pull_with_smoke_test(proxy_url)
        assert loaded(backend_url) == [PULLED, SERVING]  # loaded, but the least recently used

        generate(proxy_url, OTHER)  # needs a slot: the smoke-tested model gives it up, not the serving one
        assert loaded(backend_url) == [SERVING, OTHER]
