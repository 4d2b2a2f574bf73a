"""Small helpers the tests share: a missing tool, waiting for a condition, folders for a stack, servers in a thread,
SSE data, a p99; free ports, waiting for HTTP and running a service as a process are scripts/processes.py's, which the
benchmarks use too."""
from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import requests

from scripts.processes import (PROXY_GUNICORN, REPO_ROOT, free_port, running_process,  # noqa: F401
                               stop_process, wait_http)


def unavailable(why: str) -> None:
    """A tool or privilege a test needs is missing: a skip when pytest runs on its own, a failure under
    scripts/test.sh (TESTS_REQUIRE_TOOLS=1), which installs every tool, so CI never passes on less than it says."""
    import pytest

    if os.environ.get("TESTS_REQUIRE_TOOLS") == "1":
        pytest.fail(f"{why}; scripts/test.sh should have provided it")
    pytest.skip(why)


def eventually(predicate: Callable[[], object], timeout_s: float, every_s: float = 0.01):
    """The first truthy value of `predicate`, polled every `every_s` for `timeout_s`; else its last, falsy, value
    (for a check that reports what went wrong instead of failing the test itself)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    return predicate()


def wait_until(predicate: Callable[[], object], timeout_s: float = 10.0, what: str = "condition"):
    """The first truthy value of `predicate`, polled: a test waits for a condition instead of sleeping for it."""
    value = eventually(predicate, timeout_s)
    if not value:
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
    return value


def wait_served(url: str, headers: dict | None = None, timeout_s: float = 30.0) -> requests.Response:
    """GET `url` as a peer does: while it answers 503 with Retry-After, wait and ask again."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = requests.get(url, headers=headers or {}, timeout=10)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        assert response.headers["Retry-After"].isdigit()
        time.sleep(0.2)


def rss_bytes() -> int:
    """This process's resident memory now (an in-process backend's models included)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def slots_busy(backend_url: str) -> int:
    """How many of the backend's slots are generating or reading a prompt now (its /health)."""
    return requests.get(backend_url + "/health", timeout=5).json()["slots"]["busy"]


@contextlib.contextmanager
def fake_backend_process(log_path: Path, threads: int = 16, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """tests/fakes/backend.py under gunicorn gthread, one thread a request as `python -m server` runs; env
    FAKE_BACKEND_* shape its streams. Yields its URL and process."""
    port = free_port()
    args = ["-m", "gunicorn", "-k", "gthread", "--threads", str(threads), "--timeout", "120",
            "--bind", f"127.0.0.1:{port}", "tests.fakes.backend:app"]
    url = f"http://127.0.0.1:{port}"
    with running_process(args, env, f"{url}/health", log_path) as proc:
        yield url, proc


def stack_dirs(root: Path) -> tuple[Path, Path]:
    """`root/models` and `root/logs`, made: where a test's processes keep models and write their logs."""
    folders = root / "models", root / "logs"
    for folder in folders:
        folder.mkdir()
    return folders


@contextlib.contextmanager
def served(server) -> Iterator:
    """`server` (a socketserver or werkzeug server) answering in its own thread for the block, then shut."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """A WSGI app on a real local HTTP server (threads, streaming), for clients that need a URL."""
    from werkzeug.serving import make_server

    with served(make_server("127.0.0.1", 0, app, threaded=True)) as server:
        yield f"http://127.0.0.1:{server.server_port}"


def sse_events(body: str) -> list[str]:
    """The data of each SSE event, multi-line data joined with newlines as the SSE standard says."""
    events = []
    for block in body.split("\n\n"):
        lines = [line[len("data: "):] for line in block.split("\n") if line.startswith("data: ")]
        if lines:
            events.append("\n".join(lines))
    return events


def unique(prefix: str) -> str:
    """`prefix-<8 hex>`, new on every call: names a test can repeat without meeting its earlier runs' state."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def p99(values: list[float]) -> float:
    """The 99th percentile of latencies (inclusive method; one value is its own p99)."""
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]
