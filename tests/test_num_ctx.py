"""A request's context (Ollama's `num_ctx`, the backend's `n_ctx`) and prompts longer than it, without a real
model: which context residency loads a model with, when it reloads, and which messages a cut prompt keeps."""
from __future__ import annotations

from pathlib import Path

import pytest

from server.chat.truncation import answer_room, fit_messages, fit_tokens
from server.residency.loading import MIN_ASKED_CTX, LoadedModel, estimate
from server.residency.discovery import scan_models
from server.residency.models import Residency
from server.settings import Settings
from scripts.gguf_files import write_gguf
from tests.fakes.llama import FakeLlama

TRAINED = 8192
LAYERS = {"llama.block_count": 4, "llama.embedding_length": 256, "llama.attention.head_count": 4,
          "llama.context_length": TRAINED}


@pytest.fixture
def registry(tmp_path):
    """A registry over one real GGUF header (trained context 8192) whose loads record the context asked."""
    models = tmp_path / "models"
    models.mkdir()
    write_gguf(models / "m-Q4_0.gguf", metadata=LAYERS)
    loads: list[LoadedModel] = []

    def loader(model, n_ctx=None):
        loads.append(LoadedModel(model=model, engine=FakeLlama(model.id), n_ctx=n_ctx or 4096))
        return loads[-1]

    made = Residency(Settings(models_dir=str(models)), loader=loader, budget_bytes=1 << 30)
    yield made, loads
    made.close()


def test_a_model_loads_with_the_context_asked_and_reloads_when_idle_for_another(registry):
    registry, loads = registry
    with registry.acquire("m", n_ctx=2048) as lease:
        assert lease.n_ctx == 2048
    with registry.acquire("m", n_ctx=2048):
        pass
    with registry.acquire("m", n_ctx=1 << 20) as lease:  # more than trained: the trained context
        assert lease.n_ctx == TRAINED
    with registry.acquire("m") as lease:  # no context asked: the loaded one serves
        assert lease.n_ctx == TRAINED

    assert [load.n_ctx for load in loads] == [2048, TRAINED]
    assert loads[0].engine.closed and not loads[1].engine.closed


def test_a_model_in_use_at_another_context_serves_at_its_own(registry):
    registry, loads = registry
    with registry.acquire("m", n_ctx=2048):
        with registry.acquire("m", n_ctx=TRAINED) as second:
            assert second.n_ctx == 2048  # as Ollama answers before its queued reload
    assert len(loads) == 1


def test_a_context_is_lowered_to_fit_max_model_memory(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    write_gguf(models / "m-Q4_0.gguf", metadata=LAYERS)
    settings = Settings(models_dir=str(models))
    model = next(iter(scan_models(str(models)).values()))
    budget = estimate(settings, model, n_ctx=6000)
    loads = []
    registry = Residency(settings, loader=lambda m, n_ctx=None: loads.append(n_ctx) or LoadedModel(
        model=m, engine=FakeLlama(m.id), n_ctx=n_ctx), budget_bytes=budget)
    try:
        with registry.acquire("m", n_ctx=TRAINED) as lease:
            assert lease.n_ctx in range(5900, 6001)  # what fits, not the 8192 asked
        with registry.acquire("m", n_ctx=16) as lease:
            assert lease.n_ctx == MIN_ASKED_CTX
    finally:
        registry.close()


def _count(messages: list[dict]) -> int:
    return sum(len(m["content"]) for m in messages)


def test_fit_messages_drops_the_oldest_keeping_system_messages_and_the_last():
    messages = [{"role": "system", "content": "s" * 10}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": str(i) * 10} for i in range(6)]

    kept = fit_messages(messages, _count, 40)

    assert kept == [messages[0], *messages[-3:]]  # 10 + 3 x 10 fit in 40; a fourth would not
    assert fit_messages(messages, _count, 1) == [messages[0], messages[-1]]  # never less: the engine says 400
    assert fit_messages(messages, _count, 1000) == messages


def test_fit_tokens_keeps_the_first_token_and_the_most_recent():
    assert fit_tokens(list(range(10)), 4) == [0, 7, 8, 9]
    assert fit_tokens([1, 2], 4) == [1, 2]
    assert answer_room(4096, None) == 1024 and answer_room(4096, 16) == 16 and answer_room(4096, 10**6) == 1024
