"""The backend on the real Gemma 3 270M model, through Flask's test client (one load per module)."""
from __future__ import annotations

import json
import os
import threading

import llama_cpp
import pytest

from server.app import create_app
from server.settings import Settings
from tests.gemma_models import models_dir  # noqa: F401  the module's Gemma folder
from tests.helpers import sse_events, wait_until

GEMMA_ID = "gemma-3-270m-Q4_K_M"
GEMMA_ALIAS = "gemma-3-270m"


@pytest.fixture(scope="module")
def app(models_dir):
    app = create_app(Settings(models_dir=str(models_dir), n_ctx=512))
    yield app
    app.extensions["backend"].residency.close()


@pytest.fixture
def client(app):
    return app.test_client()


def test_generate_returns_the_whole_response(client):
    response = client.post("/api/generate", json={
        "model": GEMMA_ID, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0})

    assert response.status_code == 200
    assert isinstance(response.get_json()["response"], str)
    assert response.get_json()["response"].strip()


def test_generate_stream_sends_token_events_ending_done(client):
    # What the text is depends on the CPU's kernels (and a second request's prompt comes from the slot's
    # cache): the stream's shape is checked here, its framing of line breaks in test_server_unit.py.
    streamed = client.post("/api/generate", json={
        "model": GEMMA_ID, "prompt": "List three colors:\n1.", "max_tokens": 12, "temperature": 0,
        "stream": True})

    assert streamed.status_code == 200
    assert streamed.mimetype == "text/event-stream"
    events = sse_events(streamed.get_data(as_text=True))
    assert events[-1] == "[DONE]"
    assert len(events) > 2 and "".join(events[:-1]).strip()


def test_generate_with_messages_and_system_uses_chat(client):
    short = client.post("/api/generate", json={
        "model": GEMMA_ID, "system": "Answer briefly.",
        "messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 8, "temperature": 0})
    # The context is 512 tokens: a long system text or a long earlier turn only overflows it if the chat
    # rendering took them in.
    long_system = client.post("/api/generate", json={
        "model": GEMMA_ID, "system": "Answer briefly. " * 200,
        "messages": [{"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 8})
    long_turn = client.post("/api/generate", json={
        "model": GEMMA_ID, "messages": [{"role": "user", "content": "word " * 600},
                                        {"role": "assistant", "content": "Yes."},
                                        {"role": "user", "content": "What is 2 + 2?"}], "max_tokens": 8})

    assert short.status_code == 200 and isinstance(short.get_json()["response"], str)
    for answer in (long_system, long_turn):
        assert answer.status_code == 400, answer.get_data(as_text=True)
        assert "512" in answer.get_json()["error"]


def test_generate_stream_with_messages_ends_done(client):
    response = client.post("/api/generate", json={
        "model": GEMMA_ID, "messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 6,
        "temperature": 0, "stream": True})

    events = sse_events(response.get_data(as_text=True))
    assert response.status_code == 200
    assert events[-1] == "[DONE]" and len(events) > 1


def test_chat_completion_has_openai_shape(client):
    response = client.post("/v1/chat/completions", json={
        "model": GEMMA_ID, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8,
        "temperature": 0})

    body = response.get_json()
    assert response.status_code == 200
    assert body["object"] == "chat.completion"
    assert body["model"] == GEMMA_ID
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert 0 < body["usage"]["completion_tokens"] <= 8


def test_chat_completion_stream_ends_done(client):
    response = client.post("/v1/chat/completions", json={
        "model": GEMMA_ID, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 6,
        "stream": True})

    events = sse_events(response.get_data(as_text=True))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_completion_stream_is_sse_ending_done(client):
    response = client.post("/v1/completions", json={
        "model": GEMMA_ID, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "stream": True})

    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    body = response.get_data(as_text=True)
    assert body.endswith("data: [DONE]\n\n")
    chunks = [json.loads(event) for event in sse_events(body)[:-1]]
    assert all(chunk["object"] == "text_completion" and chunk["model"] == GEMMA_ID for chunk in chunks)
    assert "".join(chunk["choices"][0]["text"] for chunk in chunks)


def test_completion_answers_under_the_alias_without_quant_suffix(client):
    response = client.post("/v1/completions", json={
        "model": GEMMA_ALIAS, "prompt": "Hello", "max_tokens": 4, "temperature": 0})

    assert response.status_code == 200
    assert response.get_json()["model"] == GEMMA_ID


def test_unknown_model_is_404(client):
    response = client.post("/v1/chat/completions", json={
        "model": "no-such-model", "messages": [{"role": "user", "content": "x"}]})

    assert response.status_code == 404
    assert response.get_json() == {"error": {
        "type": "not_found_error", "code": "model_not_found",
        "message": "model 'no-such-model' is not installed; pull it first: POST /v1/api/pull "
                   '{"model": "owner/name"} (GET /v1/models lists the installed models)'}}


def test_bad_json_is_400(client):
    response = client.post("/v1/completions", data=b'{"model": ', content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"


def test_prompt_longer_than_the_context_is_400(client):
    response = client.post("/v1/completions", json={
        "model": GEMMA_ID, "prompt": "word " * 2000, "max_tokens": 4, "stream": True})

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"
    assert "512" in response.get_json()["error"]["message"]


def test_invalid_gguf_fails_alone_and_the_others_keep_serving(client, models_dir):
    broken = models_dir / "broken-Q4_K_M.gguf"
    truncated = models_dir / "truncated-Q4_K_M.gguf"
    broken.write_bytes(b"this is not a gguf file" * 100)
    with open(os.path.realpath(models_dir / f"{GEMMA_ID}.gguf"), "rb") as source:
        truncated.write_bytes(source.read(4 * 1024 * 1024))  # a real header, most tensor data missing
    try:
        listed = [m["id"] for m in client.get("/v1/models").get_json()["data"]]
        broken_answer = client.post("/api/generate", json={"model": "broken-Q4_K_M", "prompt": "x"})
        truncated_answer = client.post("/api/generate", json={"model": "truncated", "prompt": "x"})
        good = client.post("/api/generate", json={"model": GEMMA_ID, "prompt": "Hi", "max_tokens": 2})
    finally:
        broken.unlink()
        truncated.unlink()

    assert listed == ["broken-Q4_K_M", GEMMA_ID, "truncated-Q4_K_M"]
    for answer, filename in ((broken_answer, broken.name), (truncated_answer, truncated.name)):
        assert answer.status_code == 422
        assert answer.get_json()["code"] == "model_load_failed"
        assert filename in answer.get_json()["error"]
    assert good.status_code == 200


@pytest.fixture(scope="module")
def one_slot_client(models_dir):
    """A backend whose model has one slot: a follower is answered only once the slot is freed."""
    app = create_app(Settings(models_dir=str(models_dir), n_ctx=512, parallel=1))
    yield app.test_client()
    app.extensions["backend"].residency.close()


def test_client_leaving_mid_stream_frees_the_model(one_slot_client):
    client = one_slot_client
    response = client.post("/v1/completions", json={
        "model": GEMMA_ID, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 480, "temperature": 0,
        "stream": True}, buffered=False)
    first = next(iter(response.response))
    assert first.startswith(b"data: ")

    response.close()  # what the WSGI server does when the client disconnects

    # The 480 tokens left would hold the one slot for several seconds at this model's 50-150 tokens/s.
    wait_until(lambda: client.get("/health").get_json()["slots"]["busy"] == 0, 2.0, "the slot to be freed")
    answered = []
    follower = threading.Thread(target=lambda: answered.append(client.post("/api/generate", json={
        "model": GEMMA_ID, "prompt": "Hi", "max_tokens": 2})), daemon=True)
    follower.start()
    follower.join(60)
    assert answered and answered[0].status_code == 200


def test_health_reports_gpu_offload_and_model_count(client):
    body = client.get("/health").get_json()

    assert body["status"] == "ok"
    assert body["gpu_offload"] is bool(llama_cpp.llama_supports_gpu_offload())
    assert body["models"]["total"] == 1
