"""The proxy and the fake backend as real processes for the process tests: the proxy under gunicorn, the fake
backend under gunicorn gthread, a streamed pull and a streamed chat read in a thread, and probe latencies."""
from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import requests

from scripts import stack
from tests.helpers import fake_backend_process, free_port
from tests.pull_fixtures import TOKEN

CHAT = "/v1/chat/completions"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@dataclass
class Proxy:
    url: str
    proc: object
    log_path: Path


@contextlib.contextmanager
def proxy_process(models_dir: Path, hub, log_path: Path, **env: str) -> Iterator[Proxy]:
    """stack.proxy with HF_TOKEN set and no backend behind it, until the block ends (SIGTERM, then SIGKILL)."""
    settings = {"HF_TOKEN": TOKEN, "PROXY_API_KEY": "", "ALLOWED_REPOS": "", "PROXY_THREADS": "8",
                "PROXY_GRACEFUL_TIMEOUT_S": "10", "LOG_LEVEL": "debug", **env}
    with stack.proxy(models_dir, log_path.parent, hub.url, f"http://127.0.0.1:{free_port()}", settings,
                     log_name=log_path.name) as (url, proc):
        yield Proxy(url, proc, log_path)


class HttpStream:
    """A streamed pull read line by line as lines arrive (a reader thread keeps it draining)."""

    def __init__(self, proxy: Proxy, **body):
        self.response = requests.post(f"{proxy.url}/v1/api/pull", json=body, stream=True, timeout=(5, 60),
                                      headers={"Connection": "close"})  # no kept-alive socket to delay a stop
        assert self.response.status_code == 200, self.response.text
        self.events: list[dict] = []
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            while chunk := self.response.raw.read1(65536):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    self.events.append(json.loads(line))
        except Exception as err:  # noqa: BLE001 - a killed server ends the stream however it ends
            self.error = err

    def finish(self, timeout_s: float = 30.0) -> list[dict]:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the stream did not end in {timeout_s}s: {self.events[-2:]}"
        return self.events


@dataclass
class Backend:
    url: str
    proc: object


@contextlib.contextmanager
def fake_backend(log_path: Path, events: int, interval_s: float) -> Iterator[Backend]:
    """tests/fakes/backend.py under gunicorn gthread with as many threads as `python -m server` has."""
    from server.settings import Settings as BackendSettings  # here: server/ imports llama.cpp, the proxy tests need not

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

