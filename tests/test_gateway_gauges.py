"""The inference gateway's gauges on the proxy's /metrics, with the backend and the proxy as processes and the real
Gemma 3 270M on PARALLEL=2 (docs/deployment.md, "Many pods behind the inference gateway"): six streams at once
show two running and the rest waiting, KV use between 0 and 1, llama-server's counters moving by what the streams
generated; a scrape stays quick meanwhile, and /stats never waits on the engine's lock or thread; a full queue
answers 503 server_busy with Retry-After while /readyz stays 200."""
from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest

from proxy.metrics import BackendServingCollector
from server.app import create_app
from server.engine.gauges import EngineCounters, EngineLoad, model_stats
from server.engine.prompt_cache import BLOCK_TOKENS
from server.settings import Settings
from tests.gemma_models import gemma_folder
from tests.helpers import REPO_ROOT, p99, stack_dirs, wait_until
from tests.metrics_text import families

sys.path.insert(0, str(REPO_ROOT / "scripts"))

from stack import backend, proxy  # noqa: E402  the stack as processes, as the benchmarks run it

MODEL = "gemma-3-270m"
PARALLEL, MAX_QUEUE, N_CTX, STREAMS = 2, 4, 512, 6
STREAM_TOKENS = 16  # long enough for a 50 ms scrape to see the queue on a fast CPU
SCRAPE_INTERVAL_S = 0.05  # how often the endpoint picker scrapes a model server by default


@pytest.fixture(scope="module")
def stack(tmp_path_factory, gemma_gguf):
    models, logs = stack_dirs(tmp_path_factory.mktemp("gateway"))
    gemma_folder(gemma_gguf, models)
    settings = {"PARALLEL": str(PARALLEL), "MAX_QUEUE": str(MAX_QUEUE), "N_CTX": str(N_CTX)}
    with backend(models, logs, settings) as backend_url, \
            proxy(models, logs, "http://127.0.0.1:9", backend_url) as (url, _):
        assert _complete(url, max_tokens=1).status_code == 200  # loaded before anything is measured
        yield url, gemma_gguf.stem  # the backend's id of the model: its file name


def _complete(url: str, **extra) -> requests.Response:
    body = {"model": MODEL, "prompt": "Count: 1, 2, 3,", "max_tokens": 8, **extra}
    return requests.post(url + "/v1/completions", json=body, timeout=120)


def _stream(url: str, usage: list[int]) -> None:
    """One streamed completion read to its end; appends the completion tokens its usage reports."""
    body = {"model": MODEL, "prompt": "Count: 1, 2, 3,", "max_tokens": STREAM_TOKENS, "stream": True,
            "stream_options": {"include_usage": True}}
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=120) as response:
        assert response.status_code == 200, response.text
        for line in response.iter_lines():
            if line.startswith(b"data: {") and (chunk := json.loads(line[6:])).get("usage"):
                usage.append(chunk["usage"]["completion_tokens"])


def _scrape(url: str) -> tuple[dict, float]:
    """The per-model gauges and counters by name (one model is loaded), and how long the scrape took."""
    started = time.monotonic()
    response = requests.get(url + "/metrics", timeout=10)
    took = time.monotonic() - started
    assert response.status_code == 200
    found = {}
    for name, family in families(response.text).items():
        for (sample, labels), value in family["samples"].items():
            if "model_name" in dict(labels):
                found[sample] = value if sample != "vllm:cache_config_info" else dict(labels)
    return found, took


GOOD_MODEL = {"id": "m", "running": 2, "waiting": 3, "kv_usage": 0.5, "block_size": 1, "blocks": 1024,
              "prompt_tokens": 7, "prompt_seconds": 0.5, "generated_tokens": 9, "generated_seconds": 1.5, "decodes": 9,
              "busy_slots_per_decode": 1.5}


def _collected(models) -> dict:
    registry = CollectorRegistry()
    registry.register(BackendServingCollector(lambda: {"models": models}))
    return {(sample, labels): value for family in families(generate_latest(registry).decode()).values()
            for (sample, labels), value in family["samples"].items()}


def test_each_loaded_model_gets_the_pickers_gauges_and_llama_servers_counters():
    found = _collected([GOOD_MODEL, {**GOOD_MODEL, "id": "other", "waiting": 0}])
    assert found[("vllm:num_requests_waiting", (("model_name", "m"),))] == 3
    assert found[("vllm:num_requests_waiting", (("model_name", "other"),))] == 0
    assert found[("llamacpp:requests_deferred", (("model_name", "m"),))] == 3
    assert found[("vllm:num_requests_running", (("model_name", "m"),))] == 2
    assert found[("vllm:kv_cache_usage_perc", (("model_name", "m"),))] == 0.5
    assert found[("llamacpp:tokens_predicted_total", (("model_name", "m"),))] == 9
    info = (("block_size", "1"), ("model_name", "m"), ("num_gpu_blocks", "1024"))
    assert found[("vllm:cache_config_info", info)] == 1


@pytest.mark.parametrize("models, left_out", [
    ("not a list", "vllm:num_requests_waiting"),
    ([{**GOOD_MODEL, "id": 5}], "vllm:num_requests_waiting"),                # no usable model name
    ([{**GOOD_MODEL, "waiting": -1}], "vllm:num_requests_waiting"),
    ([{**GOOD_MODEL, "kv_usage": 1.5}], "vllm:kv_cache_usage_perc"),         # a fraction above 1
    ([{**GOOD_MODEL, "blocks": "1024"}], "vllm:cache_config_info"),
], ids=["not-a-list", "id-not-a-string", "negative", "kv-above-one", "blocks-a-string"])
def test_a_malformed_model_figure_is_left_out_alone(models, left_out):
    found = {sample for sample, _ in _collected(models)}
    assert left_out not in found
    assert (found == set()) == (not isinstance(models, list) or not isinstance(models[0]["id"], str))


def test_kv_use_is_a_fraction_of_the_cache_and_counters_follow_requests():
    assert EngineLoad(running=2, waiting=1, kv_cells_used=256, kv_cells=1024).kv_usage == 0.25
    assert EngineLoad(0, 0, 0, 0).kv_usage == 0.0
    # A slot just given a request still counts its old tokens until its first step cuts them: never above 1.
    assert EngineLoad(2, 0, 2000, 1024).kv_usage == 1.0
    counters = EngineCounters()
    counters.decoded(busy_slots=2)
    counters.decoded(busy_slots=1)
    counters.finished(prompt_evaluated=5, generated=3, started=10.0, first_token_at=10.5, ended=12.0)
    counters.finished(prompt_evaluated=4, generated=0, started=20.0, first_token_at=None, ended=21.0)  # ended early
    stats = model_stats("m", EngineLoad(1, 0, 64, 1024), counters)
    assert stats == {"id": "m", "running": 1, "waiting": 0, "kv_cells_used": 64, "kv_cells": 1024,
                     "kv_usage": 0.0625, "block_size": BLOCK_TOKENS, "blocks": 1024 // BLOCK_TOKENS,
                     "prompt_tokens": 9, "prompt_seconds": 0.5, "generated_tokens": 3, "generated_seconds": 1.5,
                     "decodes": 2, "busy_slots_per_decode": 1.5}


def test_gauges_follow_six_streams_on_two_slots_and_a_scrape_stays_quick(stack):
    stack, model_id = stack
    before, _ = _scrape(stack)
    usage: list[int] = []
    streams = [threading.Thread(target=_stream, args=(stack, usage), daemon=True) for _ in range(STREAMS)]
    for stream in streams:
        stream.start()
    seen, took = [], []
    while any(stream.is_alive() for stream in streams):
        found, seconds = _scrape(stack)
        seen.append(found)
        took.append(seconds)
        time.sleep(SCRAPE_INTERVAL_S)  # the picker's pace: scraping flat out would take the cores from decoding
    after = wait_until(lambda: (found := _scrape(stack)[0])["vllm:num_requests_running"] == 0 and found,
                       what="no request running")

    assert len(usage) == STREAMS
    assert max(s["vllm:num_requests_running"] for s in seen) == PARALLEL
    assert max(s["vllm:num_requests_waiting"] for s in seen) >= 1
    kv = [s["vllm:kv_cache_usage_perc"] for s in seen]
    assert max(kv) > 0 and all(0 <= value <= 1 for value in kv)
    assert all(s["llamacpp:requests_processing"] == s["vllm:num_requests_running"] for s in seen)
    assert (after["vllm:num_requests_waiting"], after["vllm:kv_cache_usage_perc"]) == (0, 0)
    assert after["llamacpp:requests_deferred"] == 0
    assert after["vllm:cache_config_info"] == {"model_name": model_id, "block_size": str(BLOCK_TOKENS),
                                               "num_gpu_blocks": str(PARALLEL * N_CTX // BLOCK_TOKENS)}
    generated = after["llamacpp:tokens_predicted_total"] - before["llamacpp:tokens_predicted_total"]
    assert generated == sum(usage)
    assert after["llamacpp:prompt_tokens_total"] > before["llamacpp:prompt_tokens_total"]
    assert after["llamacpp:n_decode_total"] - before["llamacpp:n_decode_total"] >= max(usage)
    assert 1 <= after["llamacpp:n_busy_slots_per_decode"] <= PARALLEL
    took.sort()
    p99_s = p99(took)
    print(f"/metrics under {STREAMS} streams on PARALLEL={PARALLEL}: {len(took)} scrapes, "
          f"p50 {took[len(took) // 2] * 1000:.1f} ms, p99 {p99_s * 1000:.1f} ms")
    # A scrape that waited behind generation would take as long as a stream; the 100 ms aim is measured above
    # (docs/deployment.md) and left to the figure, as this machine may be shared.
    assert p99_s < 1.0


def test_a_full_queue_answers_503_with_retry_after_while_readyz_stays_ready(stack):
    stack, _ = stack
    streams = [threading.Thread(target=_stream, args=(stack, []), daemon=True) for _ in range(STREAMS)]
    for stream in streams:
        stream.start()
    # At least five of the six in (one pair may have ended): four more overflow PARALLEL + MAX_QUEUE = 6.
    wait_until(lambda: _scrape(stack)[0]["vllm:num_requests_waiting"] >= MAX_QUEUE - 1, what="the queue filled")
    answers: list[requests.Response] = []
    extra = [threading.Thread(target=lambda: answers.append(_complete(stack, max_tokens=1)), daemon=True)
             for _ in range(4)]
    for thread in extra:
        thread.start()
    ready = [requests.get(stack + "/readyz", timeout=10).status_code for _ in range(3)]
    for thread in [*extra, *streams]:
        thread.join(120)

    assert ready == [200] * 3
    assert sorted({answer.status_code for answer in answers}) in ([503], [200, 503])
    busy = next(answer for answer in answers if answer.status_code == 503)
    assert busy.json()["error"]["code"] == "server_busy"
    assert int(busy.headers["Retry-After"]) >= 1


def test_stats_answer_while_the_engine_holds_its_lock_and_its_thread(tmp_path, gemma_gguf):
    """What a scrape asks never waits on the engine: not on its lock (held around admissions and releases), not
    on its thread (busy with a decode step or a task)."""
    gemma_folder(gemma_gguf, tmp_path)
    app = create_app(Settings(models_dir=str(tmp_path), parallel=PARALLEL, n_ctx=N_CTX))
    client = app.test_client()
    try:
        assert client.post("/api/load", json={"model": MODEL}).status_code == 200
        (loaded,) = app.extensions["backend"].residency.running()
        with ThreadPoolExecutor(2) as pool:
            busy = pool.submit(loaded.engine.call, time.sleep, 3.0)  # the engine's thread, taken for 3 s
            with loaded.engine._cond:  # noqa: SLF001  the lock a step's bookkeeping takes
                answer = pool.submit(client.get, "/stats").result(timeout=2.5)
            assert not busy.done()
        (model,) = answer.get_json()["models"]
        assert (model["id"], model["running"], model["waiting"]) == (gemma_gguf.stem, 0, 0)
    finally:
        app.extensions["backend"].residency.close()
