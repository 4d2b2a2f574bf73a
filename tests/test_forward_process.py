"""Forwarding under load and failure, through real processes: the proxy under gunicorn with its own config,
in front of a slow streaming backend under gunicorn with the real backend's thread count
(tests/fakes/backend.py).

- 64 chat streams held open at once: /livez and /v1/health still answer within a second, because
  forwarded requests can never take the threads that probes need.
- The backend killed mid-stream: the client's SSE stream ends with an error event saying so.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import requests

from proxy.settings import Settings as ProxySettings
from server.settings import Settings as BackendSettings
from tests.helpers import fake_backend_process
from tests.pull_fixtures import wait_until
from tests.test_proxy_process import proxy_process

CHAT = "/v1/chat/completions"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "stream": True}
STREAMS = 64


@dataclass
class Backend:
    url: str
    proc: object


@contextlib.contextmanager
def fake_backend(log_path: Path, events: int, interval_s: float) -> Iterator[Backend]:
    """tests/fakes/backend.py under gunicorn gthread with as many threads as `python -m server` has."""
    with fake_backend_process(log_path, BackendSettings().http_threads, FAKE_BACKEND_EVENTS=str(events),
                              FAKE_BACKEND_INTERVAL_S=str(interval_s)) as (url, proc):
        yield Backend(url, proc)


@dataclass
class ChatStream:
    """One streamed chat request read in a thread: its status, when it was answered, its SSE events."""

    url: str
    status: int | None = None
    answered_s: float | None = None
    events: list = field(default_factory=list)
    body: dict | None = None
    error: Exception | None = None

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            with requests.post(self.url + CHAT, json=BODY, stream=True, timeout=(5, 30)) as response:
                self.status, self.answered_s = response.status_code, time.monotonic() - started
                if response.status_code != 200:
                    self.body = response.json()
                    return
                self.events.extend(sse_data(response))
        except Exception as err:  # noqa: BLE001 - a cut stream is what some tests look for
            self.error = err

    def finish(self, timeout_s: float = 30.0) -> "ChatStream":
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), "the stream ended"
        return self


def sse_data(response) -> Iterator[str]:
    """The data of each SSE event as it arrives (events here are one `data:` line each)."""
    for line in response.iter_lines():
        if line.startswith(b"data: "):
            yield line[len(b"data: "):].decode()


def probe_latencies(url: str, window_s: float, every_s: float = 0.1) -> list[float]:
    """Seconds each GET of `url` took, asked one after another on fresh connections for `window_s`."""
    latencies = []
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        started = time.monotonic()
        response = requests.get(url, timeout=30)
        latencies.append(time.monotonic() - started)
        assert response.status_code == 200, response.text
        time.sleep(every_s)
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]


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
