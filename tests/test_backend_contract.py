"""The fake backend (tests/fakes/backend.py) answers as the real one does: the same checks run against both, over
HTTP, so tests that stand the fake in for `python -m server` cannot drift from it. The shapes are what the proxy
reads (its /metrics, residency routes, Ollama's listings and embeddings)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import jsonschema
import pytest
import requests

from server.app import create_app
from server.settings import Settings
from tests.fakes import backend as fake_backend
from tests.gemma_models import gemma_folder
from tests.helpers import serving

GEMMA_ID = "gemma-3-270m-Q4_K_M"
NUMBER = {"type": "number"}
COUNT = {"type": "integer", "minimum": 0}
HISTOGRAM = {"type": "object", "required": ["buckets", "sum", "count"], "properties": {
    "buckets": {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2}}, "sum": NUMBER,
    "count": COUNT}}
ERROR = {"type": "object", "required": ["status", "error", "code"], "properties": {
    "status": {"const": "error"}, "error": {"type": "string"}, "code": {"type": "string"}}}
SCHEMAS = {
    "health": {"type": "object", "required": ["status", "gpu_offload", "models"], "properties": {
        "status": {"const": "ok"}, "gpu_offload": {"type": "boolean"},
        "models": {"type": "object", "required": ["total"], "properties": {"total": COUNT}}}},
    "stats": {"type": "object", "required": ["prompt_tokens", "generated_tokens", "ttft_seconds", "tpot_seconds",
                                             "slots", "queue", "models"], "properties": {
        "prompt_tokens": COUNT, "generated_tokens": COUNT, "ttft_seconds": HISTOGRAM, "tpot_seconds": HISTOGRAM,
        "slots": {"type": "object", "required": ["total", "busy"], "properties": {"total": COUNT, "busy": COUNT}},
        "queue": COUNT,
        "models": {"type": "array", "items": {"type": "object", "required": [
            "id", "running", "waiting", "kv_cells_used", "kv_cells", "kv_usage", "block_size", "blocks"],
            "properties": {"id": {"type": "string"}, "running": COUNT, "waiting": COUNT, "kv_usage": NUMBER}}}}},
    "embeddings": {"type": "object", "required": ["object", "data", "model", "usage"], "properties": {
        "object": {"const": "list"}, "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"]},
        "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"],
                                            "properties": {"object": {"const": "embedding"},
                                                           "embedding": {"type": "array", "items": NUMBER}}}}}},
    "loaded": {"type": "object", "required": ["id", "status", "size_in_memory"], "properties": {
        "status": {"const": "loaded"}, "size_in_memory": COUNT}},
    "running": {"type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": {
        "type": "object", "required": ["id", "size_in_memory", "gpu_layers", "n_ctx", "slots", "queue",
                                       "expires_at", "loaded_at"],
        "properties": {"size_in_memory": COUNT, "gpu_layers": {"type": "integer"}, "n_ctx": COUNT,
                       "slots": {"type": "object", "required": ["total", "busy"]}, "queue": COUNT,
                       "expires_at": {"type": ["string", "null"]}, "loaded_at": {"type": "string"}}}}}},
    "unloaded": {"type": "object", "required": ["id", "status"], "properties": {
        "status": {"enum": ["unloaded", "unloading", "not_loaded"]}}},
    "completion": {"type": "object", "required": ["object", "model", "choices", "usage"], "properties": {
        "object": {"const": "text_completion"}, "choices": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["index", "text", "finish_reason"]}},
        "usage": {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"]}}},
    "chat": {"type": "object", "required": ["object", "model", "choices", "usage"], "properties": {
        "object": {"const": "chat.completion"}, "choices": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["index", "message", "finish_reason"], "properties": {"message": {
                "type": "object", "required": ["role", "content"], "properties": {"role": {"const": "assistant"}}}}}},
        "usage": {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"]}}},
    "error": ERROR,
}


@contextlib.contextmanager
def real_backend(folder, **settings) -> Iterator[str]:
    app = create_app(Settings(models_dir=str(folder), n_ctx=512, **settings))
    try:
        with serving(app) as url:
            yield url
    finally:
        app.extensions["backend"].residency.close()


@pytest.fixture(scope="module", params=["fake", "real"])
def backend(request, tmp_path_factory) -> Iterator[dict]:
    """The base URL of a backend, the model it serves, and one of a backend that finds every model too large."""
    if request.param == "fake":
        with serving(fake_backend.app) as url:
            yield {"url": url, "model": GEMMA_ID, "too_large": (url, "too-big-model")}
        return
    gemma = request.getfixturevalue("gemma_gguf")
    folder = gemma_folder(gemma, tmp_path_factory.mktemp("contract"))
    with real_backend(folder) as url, real_backend(folder, max_model_memory="1MiB") as small:
        yield {"url": url, "model": GEMMA_ID, "too_large": (small, GEMMA_ID)}


def answer(method: str, url: str, schema: str, status: int = 200, **kwargs) -> dict:
    response = requests.request(method, url, timeout=120, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    jsonschema.validate(body, SCHEMAS[schema])
    return body


def test_health_and_stats(backend):
    answer("GET", backend["url"] + "/health", "health")
    answer("POST", backend["url"] + "/v1/completions", "completion",
           json={"model": backend["model"], "prompt": "Hi", "max_tokens": 2, "stream": False})
    stats = answer("GET", backend["url"] + "/stats", "stats")
    assert stats["generated_tokens"] > 0


def test_completion_and_chat_answers(backend):
    completion = answer("POST", backend["url"] + "/v1/completions", "completion",
                        json={"model": backend["model"], "prompt": "Hi", "max_tokens": 2})
    chat = answer("POST", backend["url"] + "/v1/chat/completions", "chat",
                  json={"model": backend["model"], "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert completion["model"] == chat["model"] == backend["model"]


def test_embeddings_answer_one_vector_an_input(backend):
    body = answer("POST", backend["url"] + "/v1/embeddings", "embeddings",
                  json={"model": backend["model"], "input": ["one", "two"]})
    assert [item["index"] for item in body["data"]] == [0, 1]
    bad = requests.post(backend["url"] + "/v1/embeddings", json={"model": backend["model"], "input": [1]}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"  # OpenAI's shape


def test_residency_load_running_unload(backend):
    url, model = backend["url"], backend["model"]
    assert answer("POST", url + "/api/load", "loaded", json={"model": model})["id"] == model
    running = answer("GET", url + "/api/running", "running")
    assert model in [entry["id"] for entry in running["models"]]
    assert answer("POST", url + "/api/unload", "unloaded", json={"model": model})["status"] == "unloaded"
    assert answer("POST", url + "/api/unload", "unloaded", json={"model": model})["status"] == "not_loaded"


def test_a_model_too_large_and_a_missing_one_are_errors_with_their_codes(backend):
    url, model = backend["too_large"]
    assert answer("POST", url + "/api/load", "error", status=507, json={"model": model})["code"] == "model_too_large"
    missing = answer("POST", backend["url"] + "/api/load", "error", status=404, json={"model": "missing-model"})
    assert missing["code"] == "model_not_found"
