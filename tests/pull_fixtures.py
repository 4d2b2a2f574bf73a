"""Fixtures and helpers the pull tests share: a fake Hub, the real proxy app on it, GGUF sources, streams.

Import the fixtures a module uses by name (`from tests.pull_fixtures import hub, make_app, ...`); pytest
finds them in the module's namespace. Every size and timeout is small, so parts, retries and stalls are
exercised in well under a second each.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pytest
from flask import Flask

from proxy.app import create_app
from proxy.settings import Settings
from proxy.services import services_of
from scripts.gguf_files import random_gguf
from tests.fakes.hub import FakeHub, RequestRecord
from tests.fakes.hub_repos import Blob, lfs_pointer
from tests.helpers import free_port, wait_until  # noqa: F401  (tests import wait_until from here too)

REPO = "acme/tiny-GGUF"
TOKEN = "hf_secret_reader_token_0123456789"  # a token the fake Hub knows; must never leak anywhere
KiB = 1024
MiB = 1024 * 1024


def proxy_settings(models_dir: Path, hub_url: str, **overrides) -> Settings:
    """Settings with tiny parts, timeouts and backoff; a backend URL nothing listens on."""
    values = dict(
        models_dir=str(models_dir), hf_endpoint=hub_url, backend_url=f"http://127.0.0.1:{free_port()}",
        pull_connections=4, pull_chunk_bytes=256 * KiB, pull_stall_timeout_s=1.0, pull_max_retries=4,
        pull_backoff_base_s=0.01, pull_backoff_max_s=0.05, hub_timeout_s=5.0, progress_interval_s=0.02,
        backend_timeout_s=2.0, backend_connect_timeout_s=1.0,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def hub():
    with FakeHub(tokens={TOKEN}) as fake:
        yield fake


@pytest.fixture
def models_dir(tmp_path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def make_gguf(tmp_path) -> Callable[..., Path]:
    """make_gguf(name, size, seed=...) -> a valid GGUF file of exactly `size` random bytes, outside MODELS_DIR."""
    folder = tmp_path / "src"
    folder.mkdir()
    seeds = iter(range(1, 10_000))

    def make(name: str, size: int = 64 * KiB, seed: int | None = None) -> Path:
        path = folder / name.replace("/", "__")
        return random_gguf(path, size, seed if seed is not None else next(seeds))

    return make


@pytest.fixture
def make_app(hub, models_dir):
    """make_app(**settings) -> the real proxy app on the fake Hub; its pulls are stopped at teardown."""
    apps: list[Flask] = []

    def make(**overrides) -> Flask:
        app = create_app(proxy_settings(models_dir, hub.url, **overrides))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        services_of(app).reconciler.stop()
        services_of(app).pulls.shutdown()
    for app in apps:
        for job in services_of(app).pulls.jobs():
            assert job.wait(10).status in ("complete", "error"), "every pull ends after a shutdown"


@pytest.fixture
def client(make_app):
    return make_app().test_client()


@contextlib.contextmanager
def slow_backend(delay_s: float, status: int = 200) -> Iterator[str]:
    """A backend that answers every request after `delay_s`, with `status`; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self._answer()

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer()

        def _answer(self):
            time.sleep(delay_s)
            body = b'{"response": "late"}' if status == 200 else b'{"status": "error", "code": "load_failed"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- reading answers -------------------------------------------------------------------------------


def ndjson(response) -> list[dict]:
    assert response.mimetype == "application/x-ndjson", response.get_data(as_text=True)
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def pull(client, headers: dict | None = None, **body) -> list[dict]:
    """POST /v1/api/pull and read the whole NDJSON stream."""
    response = client.post("/v1/api/pull", json=body, headers=headers or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    return ndjson(response)


def pull_error(client, status: int, code: str, headers: dict | None = None, **body) -> dict:
    """POST /v1/api/pull expecting an HTTP error before streaming; returns the JSON error."""
    response = client.post("/v1/api/pull", json=body, headers=headers or {})
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.get_json()
    assert error["status"] == "error" and error["code"] == code and error["error"], error
    return error


class EventStream:
    """A streamed pull read line by line, as a client that may stop reading would."""

    def __init__(self, response):
        assert response.status_code == 200, response.get_data(as_text=True)
        self.response = response
        self._chunks = iter(response.response)
        self._buffer = b""
        self.events: list[dict] = []

    def next(self) -> dict:
        while b"\n" not in self._buffer:
            self._buffer += next(self._chunks)
        line, self._buffer = self._buffer.split(b"\n", 1)
        event = json.loads(line)
        self.events.append(event)
        return event

    def until(self, predicate: Callable[[dict], bool]) -> dict:
        while True:
            event = self.next()
            if predicate(event) or event["status"] in ("complete", "error"):
                return event

    def rest(self) -> list[dict]:
        while not self.events or self.events[-1]["status"] not in ("complete", "error"):
            self.next()
        return self.events

    def close(self) -> None:
        self.response.close()


def open_stream(client, **body) -> EventStream:
    return EventStream(client.post("/v1/api/pull", json=body, buffered=False))


# --- MODELS_DIR ----------------------------------------------------------------------------------


def top_level_ggufs(models_dir: Path) -> list[str]:
    """What a backend would serve: *.gguf files directly in MODELS_DIR."""
    return sorted(p.name for p in Path(models_dir).glob("*.gguf")) if Path(models_dir).exists() else []


def staging_files(models_dir: Path) -> list[str]:
    folder = Path(models_dir) / ".staging"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def snapshot_tree(root: Path) -> dict[str, int]:
    """Every file under `root` with its size, for before/after comparisons."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


# --- the fake Hub's log ----------------------------------------------------------------------------


def content_gets(hub: FakeHub, repo: str, path: str) -> list[RequestRecord]:
    """GET requests for the bytes of one LFS file (on the CDN), in order."""
    return hub.requests_to(hub.cdn_path(repo, path), method="GET")


def range_start(record: RequestRecord) -> int:
    """First byte a request asked for; 0 for a request without Range."""
    if not record.range:
        return 0
    return int(record.range.removeprefix("bytes=").split("-", 1)[0])


def range_end(record: RequestRecord) -> int | None:
    if not record.range:
        return None
    last = record.range.removeprefix("bytes=").split("-", 1)[1]
    return int(last) if last else None


def declare_huge_file(hub: FakeHub, repo: str, filename: str, size: int) -> None:
    """Make the head of `repo` list an LFS file of `size` bytes without storing them (the fake serves
    what it is given; this declares a size no disk here can hold)."""
    sha256 = f"{size:064x}"[-64:]
    pointer = lfs_pointer(sha256, size)
    blob = Blob(size=size, sha256=sha256, git_oid=f"{len(pointer):040x}", lfs=True, data=b"")
    hub.repo(repo).head.files[filename] = blob


def same_bytes(a: Path, b: Path) -> bool:
    return os.path.getsize(a) == os.path.getsize(b) and Path(a).read_bytes() == Path(b).read_bytes()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def statuses(events: Iterable[dict]) -> list[str]:
    return [event["status"] for event in events]
