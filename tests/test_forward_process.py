"""Forwarding under load and failure, through real processes: the proxy under gunicorn with its own config,
in front of a slow streaming backend under gunicorn with the real backend's thread count
(tests/fakes/backend.py).

- 64 chat streams held open at once: /livez and /v1/health still answer within a second, because
  forwarded requests can never take the threads that probes need.
- The backend killed mid-stream: the client's SSE stream ends with an error event saying so.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

from proxy.settings import Settings as ProxySettings
from tests.helpers import p99
from tests.proxy_processes import BODY, CHAT, ChatStream, fake_backend, probe_latencies, proxy_process
from tests.pull_fixtures import wait_until

STREAMS = 64


def test_probes_answer_within_a_second_while_64_streams_are_held_open(hub, models_dir, tmp_path):
    # Each stream lasts 8 s at the backend; the probes are asked while every one of them is held.
    with fake_backend(tmp_path / "backend.log", events=16, interval_s=0.5) as backend, \
            proxy_process(models_dir, hub, tmp_path / "proxy.log", BACKEND_URL=backend.url) as proxy:
        streams = [ChatStream(proxy.url) for _ in range(STREAMS)]
        wait_until(lambda: sum(s.status is not None for s in streams) >= 16, timeout_s=10, what="streams under way")
        time.sleep(0.5)  # the others reach the proxy
        probes = {}
        threads = [threading.Thread(target=lambda p=path: probes.__setitem__(p, probe_latencies(proxy.url + p, 3.0)))
                   for path in ("/livez", "/v1/health")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for stream in streams:
            stream.finish()

    report = {path: (round(p99(values), 3), round(max(values), 3), len(values)) for path, values in probes.items()}
    print(f"probe latency under {STREAMS} streams (p99 s, max s, count): {report}")
    # The contract's second holds for the probes as a whole (p99); one probe may meet the scheduler of two
    # cores shared by 64 client threads, the proxy and the backend, and is allowed twice that.
    assert all(p99_s < 1 and max_s < 2 for p99_s, max_s, _ in report.values()), report
    streamed = [s for s in streams if s.status == 200]
    refused = [s for s in streams if s.status != 200]
    assert len(streamed) == ProxySettings().forward_max_in_flight
    assert all(s.events[-1] == "[DONE]" and len(s.events) == 17 for s in streamed), "the streams let in run to the end"
    assert all(s.status == 503 and s.body["error"]["code"] == "server_busy" and s.answered_s < 1 for s in refused), \
        [(s.status, s.body, s.answered_s, s.error) for s in refused[:3]]


def test_backend_killed_mid_stream_ends_the_stream_with_an_error_event(hub, models_dir, tmp_path):
    with fake_backend(tmp_path / "backend.log", events=100, interval_s=0.1) as backend, \
            proxy_process(models_dir, hub, tmp_path / "proxy.log", BACKEND_URL=backend.url) as proxy:
        stream = ChatStream(proxy.url)
        wait_until(lambda: len(stream.events) >= 3, what="the first events")
        os.killpg(backend.proc.pid, signal.SIGKILL)
        stream.finish()

    assert stream.error is None, f"the stream ended cleanly, not cut: {stream.error!r}"
    assert all(json.loads(data)["object"] == "chat.completion.chunk" for data in stream.events[:-1])
    last = json.loads(stream.events[-1])
    assert last["error"]["code"] == "backend_unavailable" and "backend" in last["error"]["message"], last


def test_backend_stalled_mid_stream_ends_the_stream_with_a_timeout_event(make_app, tmp_path):
    with fake_backend(tmp_path / "backend.log", events=3, interval_s=3.0) as backend:
        client = make_app(backend_url=backend.url, backend_timeout_s=0.5).test_client()
        started = time.monotonic()
        response = client.post(CHAT, json=BODY, buffered=False)
        body = b"".join(response.response).decode()
        elapsed_s = time.monotonic() - started

    events = [line[len("data: "):] for line in body.splitlines() if line.startswith("data: ")]
    assert json.loads(events[0])["object"] == "chat.completion.chunk"
    assert json.loads(events[-1])["error"]["code"] == "backend_timeout" and len(events) == 2, events
    assert elapsed_s < 2, "the stream ends once the backend timeout passes, not when the backend sends again"
