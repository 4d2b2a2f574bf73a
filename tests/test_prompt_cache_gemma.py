"""The prompt cache on the real Gemma 3 270M (docs/api.md, Prompt cache): a prompt whose slot another
conversation took is restored from memory, and after a restart from disk, and answers as it did cold; SIGTERM
writes what memory holds; one model's states never serve another.

Gemma 3 has sliding-window layers, so its states are checkpoints taken at block boundaries while a prompt is
read (server.engine.prompt_reuse). The cold request reads its prompt in the same chunks (it stops at the same
checkpoint), so the restored request evaluates the same last chunk from the same state, alone both times: its
greedy answer is the cold one, token for token.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from scripts import stack
from server.app import create_app
from server.engine.prompt_cache import BLOCK_TOKENS
from server.settings import Settings
from tests.gemma_models import gemma_folder

MODEL, OTHER_MODEL = "gemma-3-270m-Q4_K_M", "gemma-other"
SYSTEM = " ".join(f"Rule {i}: greet the guest, name dish {i} and its price of {i * 3} euros." for i in range(14))
OTHER_SYSTEM = " ".join(f"Fact {i}: the river {i} flows north for {i * 11} km." for i in range(14))


@pytest.fixture
def models_dir(tmp_path, gemma_gguf) -> Path:
    """Gemma under two names that the proxy's records give different sha256s: two models to the cache."""
    size = gemma_gguf.stat().st_size
    gemma_folder(gemma_gguf, tmp_path, MODEL, OTHER_MODEL)
    records = [{"filename": f"{name}.gguf", "sha256": digit * 64, "size": size}
               for name, digit in ((MODEL, "a"), (OTHER_MODEL, "b"))]
    (tmp_path / ".proxy").mkdir()
    (tmp_path / ".proxy" / "models.json").write_text(json.dumps({"models": records}))
    return tmp_path


def _app(models_dir: Path):
    return create_app(Settings(models_dir=str(models_dir), n_ctx=1024, parallel=1, n_batch=128))


def _chat(app, system: str, question: str, model: str = MODEL) -> dict:
    body = {"model": model, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
    response = app.test_client().post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = response.get_json()
    return {"text": answer["choices"][0]["message"]["content"], **answer["usage"]}


def _cache_stats(app) -> dict:
    return app.test_client().get("/stats").get_json()["prompt_cache"]


def test_a_prompt_whose_slot_was_taken_is_restored_from_memory_then_disk_and_answers_as_cold(models_dir):
    app = _app(models_dir)
    try:
        cold = _chat(app, SYSTEM, "Which dish costs 12 euros?")
        assert cold["prompt_tokens_details"]["cached_tokens"] == 0
        _chat(app, OTHER_SYSTEM, "How long is river 3?")  # takes the only slot
        again = _chat(app, SYSTEM, "Which dish costs 12 euros?")
        stats = _cache_stats(app)
    finally:
        app.extensions["backend"].residency.close()  # as an unload: memory goes to disk
    n = cold["prompt_tokens"]
    assert again["prompt_tokens_details"]["cached_tokens"] == (n - 1) // BLOCK_TOKENS * BLOCK_TOKENS >= 0.9 * n - 64
    assert stats["hits"]["memory"] == 1 and stats["memory"]["bytes"] > 0
    assert again["text"] == cold["text"]

    app = _app(models_dir)  # a restart on the same MODELS_DIR
    try:
        restarted = _chat(app, SYSTEM, "Which dish costs 12 euros?")
        stats = _cache_stats(app)
    finally:
        app.extensions["backend"].residency.close()
    assert restarted["prompt_tokens_details"]["cached_tokens"] == again["prompt_tokens_details"]["cached_tokens"]
    assert stats["hits"]["disk"] == 1 and stats["disk"]["bytes"] > 0
    assert restarted["text"] == cold["text"]


def test_a_shared_system_prompt_is_restored_for_another_question_from_the_second_conversation_on(models_dir):
    # Questions longer than a block: each prompt's last checkpoint lies past the system prompt, so only the
    # checkpoint kept where the first two conversations part can serve the third.
    long_question = " ".join(f"Is dish {i} cheaper than dish {i + 1}?" for i in range(8))
    app = _app(models_dir)
    try:
        first = _chat(app, SYSTEM, "First: " + long_question)
        _chat(app, SYSTEM, "Second: " + long_question)  # finds where the two part, keeps a checkpoint there
        _chat(app, OTHER_SYSTEM, "How long is river 3?")
        third = _chat(app, SYSTEM, "Hello?")
    finally:
        app.extensions["backend"].residency.close()
    shared = third["prompt_tokens_details"]["cached_tokens"]
    assert first["prompt_tokens"] - third["prompt_tokens"] > BLOCK_TOKENS
    # The third question and the turn's closing tokens are under 16 tokens: all before them is shared, and was
    # kept where the second conversation parted from the first (not a block boundary: up to 63 tokens earlier).
    assert shared >= third["prompt_tokens"] - 16, third


def test_one_models_states_never_serve_another(models_dir):
    app = _app(models_dir)
    try:
        _chat(app, SYSTEM, "Which dish costs 12 euros?")
        _chat(app, OTHER_SYSTEM, "How long is river 3?")  # the first prompt's state is now only in the cache
        other = _chat(app, SYSTEM, "Which dish costs 12 euros?", model=OTHER_MODEL)
        stats = _cache_stats(app)
    finally:
        app.extensions["backend"].residency.close()
    assert other["prompt_tokens_details"]["cached_tokens"] == 0
    assert stats["hits"] == {"slot": 0, "memory": 0, "disk": 0} and stats["misses"] == 3


def test_sigterm_writes_what_memory_holds_to_models_dir(models_dir, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("logs")
    with stack.backend(models_dir, log_dir, {"N_CTX": "1024", "PARALLEL": "1", "N_BATCH": "128"}) as url:
        body = {"model": MODEL, "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello?"}]}
        response = requests.post(f"{url}/v1/chat/completions", json=body, timeout=300)
        assert response.status_code == 200, response.text
        assert not list(models_dir.glob(".prompt-cache/*/*.kv"))  # kept in memory so far
    # The block's end sent SIGTERM and waited for the backend to exit.
    assert list(models_dir.glob(".prompt-cache/*/*.kv")), (log_dir / "backend.log").read_text()[-2000:]
