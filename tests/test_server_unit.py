"""Backend units without a real model: discovery, naming, the LRU of loaded models, streams, settings."""
from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

import pytest

from server.app import create_app
from server.residency.discovery import resolve_model, scan_models
from server.errors import ModelNotFound
from server.residency.loading import LoadedModel
from server.residency.models import Residency
from server.settings import Settings
from server.api.streaming import LeasedStream, text_event
from tests.fakes.llama import FakeLlama


def _touch(folder: Path, name: str, size: int = 16) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


@pytest.fixture
def models_dir(tmp_path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


@pytest.fixture
def client(models_dir):
    return create_app(Settings(models_dir=str(models_dir))).test_client()


def test_split_set_is_one_model_named_without_part_suffix(models_dir, client):
    _touch(models_dir, "big-model-Q4_K_M-00001-of-00002.gguf", 10)
    _touch(models_dir, "big-model-Q4_K_M-00002-of-00002.gguf", 20)

    models = scan_models(str(models_dir))

    assert list(models) == ["big-model-Q4_K_M"]
    model = models["big-model-Q4_K_M"]
    assert model.path.endswith("big-model-Q4_K_M-00001-of-00002.gguf")
    assert model.files == ("big-model-Q4_K_M-00001-of-00002.gguf", "big-model-Q4_K_M-00002-of-00002.gguf")
    assert model.size_bytes == 30
    shimmy = client.get("/api/models").get_json()["models"]
    assert shimmy == [{"name": "big-model-Q4_K_M", "size_bytes": 30, "source": "discovered",
                       "files": list(model.files)}]


def test_incomplete_split_set_is_not_listed(models_dir, client):
    _touch(models_dir, "big-Q8_0-00001-of-00003.gguf")
    _touch(models_dir, "big-Q8_0-00003-of-00003.gguf")

    assert client.get("/v1/models").get_json() == {"object": "list", "data": []}

    _touch(models_dir, "big-Q8_0-00002-of-00003.gguf")  # the last part arrives: listed at once
    assert [m["id"] for m in client.get("/v1/models").get_json()["data"]] == ["big-Q8_0"]


def test_hidden_files_folders_and_subfolders_are_never_models(models_dir, client):
    _touch(models_dir, ".staging/pulling-Q4_K_M.gguf")
    _touch(models_dir, ".locks/x.gguf")
    _touch(models_dir, ".proxy/meta.gguf")
    _touch(models_dir, ".hidden-Q4_K_M.gguf")
    _touch(models_dir, "sub/nested-Q4_K_M.gguf")
    _touch(models_dir, "notes.txt")
    _touch(models_dir, "partial.gguf.part")
    (models_dir / "folder.gguf").mkdir()
    _touch(models_dir, "visible-Q4_K_M.gguf")

    ids = [m["id"] for m in client.get("/v1/models").get_json()["data"]]

    assert ids == ["visible-Q4_K_M"]
    assert client.get("/health").get_json()["models"]["total"] == 1


def test_missing_models_dir_lists_nothing(tmp_path):
    client = create_app(Settings(models_dir=str(tmp_path / "absent"))).test_client()
    assert client.get("/v1/models").get_json()["data"] == []
    assert client.get("/health").get_json()["status"] == "ok"


def test_names_resolve_by_id_file_name_and_quantless_alias(models_dir):
    _touch(models_dir, "phi-3-mini-4k-instruct.Q4_K_M.gguf")
    _touch(models_dir, "gemma-3-270m-q4_k_m.gguf")
    _touch(models_dir, "split-IQ4_XS-00001-of-00002.gguf")
    _touch(models_dir, "split-IQ4_XS-00002-of-00002.gguf")
    models = scan_models(str(models_dir))

    def resolved(name):
        model = resolve_model(models, name)
        return model.id if model else None

    assert resolved("phi-3-mini-4k-instruct.Q4_K_M") == "phi-3-mini-4k-instruct.Q4_K_M"
    assert resolved("phi-3-mini-4k-instruct.Q4_K_M.gguf") == "phi-3-mini-4k-instruct.Q4_K_M"
    assert resolved("phi-3-mini-4k-instruct") == "phi-3-mini-4k-instruct.Q4_K_M"
    assert resolved("gemma-3-270m") == "gemma-3-270m-q4_k_m"
    assert resolved("split") == "split-IQ4_XS"
    assert resolved("split-IQ4_XS-00001-of-00002.gguf") == "split-IQ4_XS"
    assert resolved("phi-3") is None


def test_quantless_alias_matching_two_models_is_refused(models_dir):
    _touch(models_dir, "tiny-Q4_K_M.gguf")
    _touch(models_dir, "tiny-Q8_0.gguf")
    models = scan_models(str(models_dir))

    with pytest.raises(ModelNotFound, match="ambiguous"):
        resolve_model(models, "tiny")
    assert resolve_model(models, "tiny-Q8_0").id == "tiny-Q8_0"


def test_unknown_model_is_404_and_not_gguf_file_is_422(models_dir, client):
    _touch(models_dir, "junk-Q4_K_M.gguf", 100)

    missing = client.post("/api/generate", json={"model": "nope", "prompt": "hi"})
    junk = client.post("/api/generate", json={"model": "junk", "prompt": "hi"})

    assert missing.status_code == 404
    assert missing.get_json()["code"] == "model_not_found"
    assert junk.status_code == 422
    assert junk.get_json()["code"] == "model_load_failed"
    assert "junk-Q4_K_M.gguf" in junk.get_json()["error"]
    assert [m["id"] for m in client.get("/v1/models").get_json()["data"]] == ["junk-Q4_K_M"]


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/generate", b"{not json"),
        ("/api/generate", b"[1, 2]"),
        ("/api/generate", b'{"model": "m"}'),
        ("/api/generate", b'{"model": 5, "prompt": "x"}'),
        ("/api/generate", b'{"model": "m", "prompt": "x", "max_tokens": "10"}'),
        ("/api/generate", b'{"model": "m", "prompt": "x", "stream": "yes"}'),
        ("/api/generate", b'{"model": "m", "prompt": "x", "temperature": -1}'),
        ("/v1/completions", b'{"model": "m", "prompt": 7}'),
        ("/v1/completions", b'{"model": "m", "prompt": "x", "stop": [1]}'),
        ("/v1/chat/completions", b'{"model": "m", "messages": "hi"}'),
        ("/v1/chat/completions", b'{"model": "m", "messages": [{"content": "no role"}]}'),
        ("/v1/chat/completions",
         b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": 1.5}'),
    ],
)
def test_bad_json_or_wrong_types_are_400(client, path, body):
    response = client.post(path, data=body, content_type="application/json")

    assert response.status_code == 400
    if path.startswith("/v1/"):  # OpenAI-compatible: OpenAI's error shape, our code
        assert response.get_json()["error"]["code"] == "invalid_request"
        assert response.get_json()["error"]["type"] == "invalid_request_error"
    else:
        assert response.get_json()["code"] == "invalid_request"
        assert response.get_json()["status"] == "error"


def test_unknown_route_and_method_answer_json(client):
    assert client.get("/nope").get_json()["code"] == "not_found"
    assert client.get("/api/generate").get_json()["code"] == "method_not_allowed"


def test_sse_text_event_splits_line_breaks_over_data_lines():
    assert text_event("hello") == "data: hello\n\n"
    assert text_event("a\nb") == "data: a\ndata: b\n\n"
    assert text_event("\n") == "data: \ndata: \n\n"
    assert text_event("x\r\ny\rz") == "data: x\ndata: y\ndata: z\n\n"


def _fake_registry(models_dir: Path, max_loaded: int):
    loads: list[FakeLlama] = []

    def loader(model):
        loads.append(FakeLlama(model.id))
        return LoadedModel(model=model, engine=loads[-1], n_ctx=64)

    settings = Settings(models_dir=str(models_dir), max_loaded_models=max_loaded)
    return Residency(settings, loader=loader, estimator=lambda model: 1, budget_bytes=1 << 30), loads


def test_least_recently_used_model_is_unloaded_first(models_dir):
    for name in ("a-Q4_0.gguf", "b-Q4_0.gguf", "c-Q4_0.gguf"):
        _touch(models_dir, name)
    registry, loads = _fake_registry(models_dir, max_loaded=2)

    for name in ("a", "b", "a", "c"):  # c evicts b, the least recently used
        with registry.acquire(name):
            pass

    assert registry.loaded_ids() == ["a-Q4_0", "c-Q4_0"]
    assert [(llama.name, llama.closed) for llama in loads] == [
        ("a-Q4_0", False), ("b-Q4_0", True), ("c-Q4_0", False)]


def test_unloading_waits_for_the_request_using_the_model(models_dir):
    _touch(models_dir, "a-Q4_0.gguf")
    _touch(models_dir, "b-Q4_0.gguf")
    registry, loads = _fake_registry(models_dir, max_loaded=1)
    lease = registry.acquire("a")
    other = threading.Thread(target=lambda: registry.acquire("b").release())
    other.start()

    other.join(0.3)
    assert other.is_alive() and not loads[0].closed  # b waits: a is still generating
    lease.release()
    other.join(5)

    assert not other.is_alive()
    assert loads[0].closed
    assert registry.loaded_ids() == ["b-Q4_0"]


def test_trying_a_model_with_room_keeps_the_serving_one_and_goes_first_later(models_dir):
    for name in ("a-Q4_0.gguf", "b-Q4_0.gguf", "c-Q4_0.gguf"):
        _touch(models_dir, name)
    registry, loads = _fake_registry(models_dir, max_loaded=2)
    with registry.acquire("a"):
        pass

    with registry.trying("b"), registry.acquire("b"):
        pass
    assert registry.loaded_ids() == ["b-Q4_0", "a-Q4_0"]  # b is the least recently used
    with registry.acquire("c"):
        pass

    assert registry.loaded_ids() == ["a-Q4_0", "c-Q4_0"]
    assert [(llama.name, llama.closed) for llama in loads] == [
        ("a-Q4_0", False), ("b-Q4_0", True), ("c-Q4_0", False)]


@pytest.mark.parametrize("loadable", [True, False])
def test_trying_a_model_without_room_loads_the_evicted_ones_back_in_their_order(models_dir, loadable):
    for name in ("a-Q4_0.gguf", "b-Q4_0.gguf", "c-Q4_0.gguf"):
        _touch(models_dir, name)
    registry, loads = _fake_registry(models_dir, max_loaded=2)
    for name in ("a", "b"):
        with registry.acquire(name):
            pass

    with pytest.raises(RuntimeError) if not loadable else contextlib.nullcontext():
        with registry.trying("c"), registry.acquire("c"):  # evicts a
            assert registry.loaded_ids() == ["b-Q4_0", "c-Q4_0"]
            if not loadable:
                raise RuntimeError("the smoke test failed")

    assert registry.loaded_ids() == ["a-Q4_0", "b-Q4_0"]
    assert [llama.name for llama in loads if not llama.closed] == ["b-Q4_0", "a-Q4_0"]


def test_settings_from_env_reads_the_contract_variables():
    settings = Settings.from_env({
        "MODELS_DIR": "/m", "BACKEND_HOST": "127.0.0.2", "HOST": "0.0.0.0", "BACKEND_PORT": "9000", "N_CTX": "2048",
        "N_GPU_LAYERS": "0", "N_THREADS": "3", "MAX_LOADED_MODELS": "2", "FLASH_ATTN": "false",
    })

    assert (settings.models_dir, settings.host, settings.port) == ("/m", "127.0.0.2", 9000)  # HOST is the proxy's
    assert (settings.n_ctx, settings.n_gpu_layers, settings.n_threads) == (2048, 0, 3)
    assert settings.max_loaded_models == 2 and settings.flash_attn is False
    defaults = Settings.from_env({})
    assert (defaults.host, defaults.port, defaults.max_loaded_models) == ("127.0.0.1", 8081, 1)
    assert defaults.n_ctx is None and defaults.n_threads is None and defaults.n_gpu_layers is None
    with pytest.raises(ValueError, match="N_THREADS"):
        Settings.from_env({"N_THREADS": "many"})


def test_replaced_file_is_loaded_again(models_dir):
    path = _touch(models_dir, "a-Q4_0.gguf", 10)
    registry, loads = _fake_registry(models_dir, max_loaded=2)
    with registry.acquire("a"):
        pass

    path.write_bytes(b"y" * 20)  # a new pull of the same file name
    with registry.acquire("a"):
        pass

    assert [(llama.name, llama.closed) for llama in loads] == [("a-Q4_0", True), ("a-Q4_0", False)]
    assert registry.loaded_ids() == ["a-Q4_0"]


def test_health_answers_while_a_model_is_loading(models_dir):
    _touch(models_dir, "slow-Q4_0.gguf")
    loading, finish = threading.Event(), threading.Event()

    def slow_loader(model):
        loading.set()
        finish.wait(10)
        return LoadedModel(model=model, engine=FakeLlama(model.id), n_ctx=64)

    settings = Settings(models_dir=str(models_dir))
    registry = Residency(settings, loader=slow_loader, estimator=lambda model: 1, budget_bytes=1 << 30)
    client = create_app(settings, residency=registry).test_client()
    registry = client.application.extensions["backend"].residency
    loader_thread = threading.Thread(target=lambda: registry.acquire("slow"))
    loader_thread.start()
    loading.wait(5)
    try:
        health = client.get("/health").get_json()
    finally:
        finish.set()
        loader_thread.join(5)

    assert health["status"] == "ok" and health["models"] == {"total": 1, "loaded": 0, "loaded_ids": []}
    assert health["slots"] == {"total": 0, "busy": 0} and health["queue"] == 0


def test_body_over_the_limit_is_413(models_dir):
    client = create_app(Settings(models_dir=str(models_dir), max_body_bytes=1024)).test_client()

    response = client.post("/api/generate", data=b"x" * 2048, content_type="application/json")

    assert response.status_code == 413
    assert response.get_json()["code"] == "body_too_large"


def test_error_mid_stream_becomes_the_last_event_and_frees_the_model(models_dir):
    _touch(models_dir, "a-Q4_0.gguf")
    registry, _ = _fake_registry(models_dir, max_loaded=1)
    lease = registry.acquire("a")

    def events():
        yield "data: one\n\n"
        raise RuntimeError("secret detail")

    stream = LeasedStream(lease, events())
    stream.prime()
    body = list(stream)
    stream.close()

    assert body[0] == "data: one\n\n"
    assert json.loads(body[1][len("data: "):]) == {
        "status": "error", "error": "generation failed; see the backend's log", "code": "internal_error"}
    assert registry.running()[0].users == 0  # the stream let go of the model


def test_closing_a_stream_stops_its_generation(models_dir):
    _touch(models_dir, "a-Q4_0.gguf")
    registry, _ = _fake_registry(models_dir, max_loaded=1)
    lease = registry.acquire("a")
    produced, cancelled = [], []

    def endless():
        while True:
            produced.append(1)
            yield "data: x\n\n"

    stream = LeasedStream(lease, endless(), cancel=lambda: cancelled.append(True))
    stream.prime()
    stream.close()
    count = len(produced)
    time.sleep(0.05)

    assert len(produced) == count and cancelled == [True]  # the generation was told to stop
    with registry.acquire("a") as again:
        assert again.loaded.users == 1  # the stream's hold on the model was released


@pytest.mark.parametrize("parse, body", [
    ("parse_generate", {"model": "m", "prompt": "x"}),
    ("parse_completion", {"model": "m", "prompt": "x"}),
    ("parse_chat", {"model": "m", "messages": [{"role": "user", "content": "x"}]}),
])
def test_without_max_tokens_generation_runs_to_the_end_of_sequence_or_context(parse, body):
    """docs/api.md "Generating": no max_tokens means no cap of ours (llama-cpp-python's default is 16 tokens)."""
    from server.api import params

    assert getattr(params, parse)(body).sampling["max_tokens"] is None
    assert getattr(params, parse)({**body, "max_tokens": 5}).sampling["max_tokens"] == 5


def test_chat_takes_max_completion_tokens_when_max_tokens_is_absent():
    from server.api.params import parse_chat

    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 7}
    assert parse_chat(body).sampling["max_tokens"] == 7
