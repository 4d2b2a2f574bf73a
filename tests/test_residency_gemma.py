"""Which models stay in memory, on the real Gemma 3 270M (docs/api.md, Residency): keep_alive, the memory
budget, 507 model_too_large before any load, pinned models, and never an unload under a running request."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from server.app import create_app
from server.residency.loading import estimate
from server.settings import Settings
from tests.gemma_models import gemma_folder
from tests.helpers import rss_bytes, wait_until

A, B = "gemma-a-Q4_K_M", "gemma-b-Q4_K_M"


@pytest.fixture
def models_dir(tmp_path, gemma_gguf) -> Path:
    return gemma_folder(gemma_gguf, tmp_path, A, B)  # two models, the same bytes


def _settings(models_dir: Path, **changes) -> Settings:
    return Settings(models_dir=str(models_dir), n_ctx=512, parallel=2, max_loaded_models=4, **changes)


def _one_model_bytes(models_dir: Path) -> int:
    registry_settings = _settings(models_dir)
    app = create_app(registry_settings)
    try:
        return estimate(registry_settings, app.extensions["backend"].residency.find(A))
    finally:
        app.extensions["backend"].residency.close()


def _client(models_dir: Path, **changes):
    app = create_app(_settings(models_dir, **changes))
    return app, app.test_client()


def _generate(client, model: str, **extra) -> dict:
    response = client.post("/v1/completions", json={"model": model, "prompt": "Hi", "max_tokens": 2, **extra})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _running(client) -> list[str]:
    return [entry["id"] for entry in client.get("/api/running").get_json()["models"]]



def test_model_idle_past_its_keep_alive_is_unloaded_and_memory_falls(models_dir):
    app, client = _client(models_dir, keep_alive="2s")
    try:
        before = rss_bytes()
        _generate(client, A)
        loaded = rss_bytes()
        entry = client.get("/api/running").get_json()["models"][0]
        assert entry["id"] == A and entry["expires_at"] and entry["slots"] == {"total": 2, "busy": 0}

        wait_until(lambda: _running(client) == [], 10, "the idle model unloaded")
        assert loaded - before > 100 << 20
        wait_until(lambda: rss_bytes() < loaded - (100 << 20), 10, "the weights and the KV cache freed")
    finally:
        app.extensions["backend"].residency.close()


def test_keep_alive_zero_unloads_when_the_request_ends_and_minus_one_keeps_it(models_dir):
    app, client = _client(models_dir, keep_alive="1s")
    try:
        _generate(client, A, keep_alive=0)
        assert _running(client) == []
        _generate(client, A, keep_alive=-1)
        time.sleep(2.5)
        entry = client.get("/api/running").get_json()["models"][0]
        assert entry["id"] == A and entry["expires_at"] is None
    finally:
        app.extensions["backend"].residency.close()


def test_second_model_that_does_not_fit_unloads_the_idle_first(models_dir):
    one = _one_model_bytes(models_dir)
    app, client = _client(models_dir, max_model_memory=str(one * 3 // 2))
    try:
        _generate(client, A)
        _generate(client, B)
        assert _running(client) == [B]
    finally:
        app.extensions["backend"].residency.close()


def test_model_larger_than_the_budget_is_507_before_anything_loads(models_dir):
    one = _one_model_bytes(models_dir)
    app, client = _client(models_dir, max_model_memory=str(one // 2))
    try:
        response = client.post("/v1/completions", json={"model": A, "prompt": "Hi", "max_tokens": 2})
        error = response.get_json()["error"]
        assert response.status_code == 507 and error["code"] == "model_too_large"
        assert "MAX_MODEL_MEMORY" in error["message"] and "MiB" in error["message"]
        assert _running(client) == []
    finally:
        app.extensions["backend"].residency.close()


def test_a_model_in_use_is_never_unloaded_mid_request(models_dir):
    one = _one_model_bytes(models_dir)
    app, client = _client(models_dir, max_model_memory=str(one * 3 // 2), keep_alive="0")
    try:
        streaming = client.post("/v1/completions", json={"model": A, "prompt": "Count:", "max_tokens": 60,
                                                         "stream": True, "temperature": 0}, buffered=False)
        chunks = iter(streaming.response)
        next(chunks)
        other: list[dict] = []
        waiting = threading.Thread(target=lambda: other.append(_generate(app.test_client(), B)))
        waiting.start()
        time.sleep(1.0)
        assert _running(client) == [A] and not other  # B waits for room; A keeps generating
        body = b"".join(chunk if isinstance(chunk, bytes) else chunk.encode() for chunk in chunks)
        assert body.rstrip().endswith(b"data: [DONE]") and b'"finish_reason":"length"' in body
        streaming.close()
        waiting.join(60)
        assert other and _running(client) == []  # B ran once A was done (keep_alive 0 unloads both)
    finally:
        app.extensions["backend"].residency.close()


def test_loaded_ahead_with_keep_alive_minus_one_survives_idleness_and_requests_asking_less(models_dir):
    app, client = _client(models_dir, keep_alive="1s")
    try:
        loaded = client.post("/api/load", json={"model": A, "keep_alive": -1})
        assert loaded.status_code == 200 and loaded.get_json()["status"] == "loaded"
        _generate(client, A, keep_alive="1s")  # a client's own keep_alive does not unpin it
        time.sleep(2.5)
        assert _running(client) == [A]
        assert client.post("/api/unload", json={"model": A}).get_json()["status"] == "unloaded"
        assert _running(client) == []
    finally:
        app.extensions["backend"].residency.close()
