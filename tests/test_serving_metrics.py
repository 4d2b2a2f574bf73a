"""The proxy's /metrics shows the backend's serving figures (GET /stats: time to first token, time per output
token, prompt and generated tokens, slots, queue), and leaves them out cleanly when the backend is down or
has no /stats (Shimmy, an older backend)."""
from __future__ import annotations

import contextlib
import math
import threading
from pathlib import Path
from typing import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest

from proxy.app import create_app
from proxy.metrics import BackendServingCollector
from tests.helpers import fake_backend_process, free_port
from tests.metrics_text import families, sample
from tests.proxy_processes import proxy_process
from tests.pull_fixtures import proxy_settings, wait_until

SERVING = ("proxy_backend_time_to_first_token_seconds", "proxy_backend_time_per_output_token_seconds",
           "proxy_backend_prompt_tokens", "proxy_backend_generated_tokens", "proxy_backend_slots_busy",
           "proxy_backend_slots", "proxy_backend_queue_depth")
EVENTS, INTERVAL_S, SLOTS, STREAMS = 4, 0.3, 4, 5


@contextlib.contextmanager
def fake_backend(log_path: Path, **env: str) -> Iterator[str]:
    """tests/fakes/backend.py under gunicorn gthread (tests/proxy_processes.py's imports server/: llama.cpp)."""
    with fake_backend_process(log_path, **env) as (url, _):
        yield url


def chat_stream(url: str, results: list) -> threading.Thread:
    """A streamed chat request through `url` read to its end in a thread; appends (status, last data line)."""
    def read() -> None:
        body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with requests.post(url + "/v1/chat/completions", json=body, stream=True, timeout=(5, 30)) as response:
            lines = [line for line in response.iter_lines() if line.startswith(b"data: ")]
            results.append((response.status_code, lines[-1] if lines else None))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def scrape_url(url: str) -> dict[str, dict]:
    response = requests.get(url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return families(response.text)


def test_metrics_show_the_backends_serving_figures_through_gunicorn(hub, models_dir, tmp_path):
    env = {"FAKE_BACKEND_SLOTS": str(SLOTS), "FAKE_BACKEND_EVENTS": str(EVENTS),
           "FAKE_BACKEND_INTERVAL_S": str(INTERVAL_S)}
    results: list = []
    with fake_backend(tmp_path / "backend.log", **env) as backend_url, \
            proxy_process(models_dir, hub, tmp_path / "proxy.log", BACKEND_URL=backend_url) as proxy:
        idle = scrape_url(proxy.url)
        assert sample(idle, "proxy_backend_slots") == SLOTS and sample(idle, "proxy_backend_slots_busy") == 0
        assert sample(idle, "proxy_backend_generated_tokens", "proxy_backend_generated_tokens_total") == 0
        streams = [chat_stream(proxy.url, results) for _ in range(STREAMS)]
        # Every slot busy and the one stream beyond them queued (the streams start in their own threads).
        busy = wait_until(lambda: (found := scrape_url(proxy.url)) and
                          sample(found, "proxy_backend_slots_busy") == SLOTS and
                          sample(found, "proxy_backend_queue_depth") == STREAMS - SLOTS and found,
                          what="every slot busy and one stream queued")
        assert sample(busy, "proxy_backend_queue_depth") == STREAMS - SLOTS
        for stream in streams:
            stream.join(30)
        done = scrape_url(proxy.url)

    assert results == [(200, b"data: [DONE]")] * STREAMS
    assert {name: done[name]["type"] for name in SERVING} == {
        "proxy_backend_time_to_first_token_seconds": "histogram",
        "proxy_backend_time_per_output_token_seconds": "histogram", "proxy_backend_prompt_tokens": "counter",
        "proxy_backend_generated_tokens": "counter", "proxy_backend_slots_busy": "gauge",
        "proxy_backend_slots": "gauge", "proxy_backend_queue_depth": "gauge"}
    assert sample(done, "proxy_backend_generated_tokens", "proxy_backend_generated_tokens_total") == STREAMS * EVENTS
    assert sample(done, "proxy_backend_prompt_tokens", "proxy_backend_prompt_tokens_total") == STREAMS  # "hi"
    assert sample(done, "proxy_backend_slots_busy") == 0 and sample(done, "proxy_backend_queue_depth") == 0
    ttft, tpot = "proxy_backend_time_to_first_token_seconds", "proxy_backend_time_per_output_token_seconds"
    assert sample(done, ttft, ttft + "_count") == STREAMS
    assert sample(done, ttft, ttft + "_bucket", le="+Inf") == STREAMS
    # The fake sleeps INTERVAL_S between tokens: every gap lands above 0.25 s and (on any sane host) within 1 s.
    gaps = STREAMS * (EVENTS - 1)
    assert sample(done, tpot, tpot + "_count") == gaps
    assert sample(done, tpot, tpot + "_bucket", le="0.25") == 0
    assert sample(done, tpot, tpot + "_bucket", le="1.0") == gaps
    assert gaps * INTERVAL_S <= sample(done, tpot, tpot + "_sum") < gaps * 1.0


def test_metrics_leave_serving_figures_out_when_the_backend_has_no_stats(tmp_path, hub, models_dir):
    # /stats answers 404, as Shimmy's does
    with fake_backend(tmp_path / "backend.log", FAKE_BACKEND_STATS="off") as backend_url:
        client = create_app(proxy_settings(models_dir, hub.url, backend_url=backend_url)).test_client()
        response = client.get("/metrics")
    assert response.status_code == 200
    found = families(response.get_data(as_text=True))
    assert sample(found, "proxy_backend_up") == 1  # the backend answered; it just has no serving figures
    assert not set(SERVING) & set(found)


def test_metrics_leave_serving_figures_out_when_the_backend_is_down(hub, models_dir):
    client = create_app(proxy_settings(models_dir, hub.url,
                                       backend_url=f"http://127.0.0.1:{free_port()}")).test_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    found = families(response.get_data(as_text=True))
    assert sample(found, "proxy_backend_up") == 0
    assert not set(SERVING) & set(found)


GOOD_HISTOGRAM = {"buckets": [[0.1, 1], [1.0, 3], ["+Inf", 4]], "sum": 5.5, "count": 4}


@pytest.mark.parametrize("stats, expected", [
    ([1, 2], set()),
    ("not an object", set()),
    ({}, set()),
    ({"prompt_tokens": -1, "generated_tokens": True, "queue": "3", "slots": [4, 1]}, set()),
    ({"generated_tokens": math.inf, "prompt_tokens": 7, "slots": {"total": None, "busy": 2}},
     {"proxy_backend_prompt_tokens", "proxy_backend_slots_busy"}),
    ({"ttft_seconds": {**GOOD_HISTOGRAM, "buckets": [[1.0, 3], [0.1, 1], ["+Inf", 4]]}}, set()),  # unordered
    ({"ttft_seconds": {**GOOD_HISTOGRAM, "buckets": [[0.1, 3], [1.0, 1], ["+Inf", 4]]}}, set()),  # counts fall
    ({"ttft_seconds": {**GOOD_HISTOGRAM, "buckets": [[-1, 0], ["+Inf", 4]]}}, set()),  # negative bound
    ({"ttft_seconds": {**GOOD_HISTOGRAM, "buckets": [["x", 1]]}}, set()),
    ({"ttft_seconds": {**GOOD_HISTOGRAM, "sum": None}}, set()),
    ({"ttft_seconds": {"buckets": [[0.1, 1], [1.0, 3]], "sum": 2.0, "count": 2}}, set()),  # +Inf below 1.0's
    ({"ttft_seconds": GOOD_HISTOGRAM, "tpot_seconds": {"buckets": "[]", "sum": 0, "count": 0}},
     {"proxy_backend_time_to_first_token_seconds"}),
])
def test_a_malformed_stats_answer_leaves_out_only_the_malformed_figures(stats, expected):
    registry = CollectorRegistry()
    registry.register(BackendServingCollector(lambda: stats))
    assert set(families(generate_latest(registry).decode())) == expected


def test_a_histogram_without_its_inf_bucket_takes_its_count():
    registry = CollectorRegistry()
    stats = {"tpot_seconds": {"buckets": [[0.05, 2], [0.5, 9]], "sum": 1.25, "count": 10}}
    registry.register(BackendServingCollector(lambda: stats))
    found = families(generate_latest(registry).decode())
    name = "proxy_backend_time_per_output_token_seconds"
    assert {labels: value for (sample_name, labels), value in found[name]["samples"].items()
            if sample_name == name + "_bucket"} == {
        (("le", "0.05"),): 2, (("le", "0.5"),): 9, (("le", "+Inf"),): 10}
    assert sample(found, name, name + "_count") == 10 and sample(found, name, name + "_sum") == 1.25
