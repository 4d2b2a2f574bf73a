"""Small helpers the tests share: free ports, waiting for HTTP, running a service as a process."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Mapping

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent


def stack_dirs(root: Path) -> tuple[Path, Path]:
    """`root/models` and `root/logs`, made: where a test's processes keep models and write their logs."""
    folders = root / "models", root / "logs"
    for folder in folders:
        folder.mkdir()
    return folders


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout_s: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until `url` answers any HTTP status; fail early if `proc` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


@contextlib.contextmanager
def running_process(
    args: list[str], env: Mapping[str, str], ready_url: str, log_path: Path, timeout_s: float = 60.0
) -> Iterator[subprocess.Popen]:
    """Run `args` (python -m ...) from the repo root until the block ends; output goes to log_path."""
    full_env = {**os.environ, **env}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, *args] if args[0] == "-m" else args,
            cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_http(ready_url, timeout_s, proc)
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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

