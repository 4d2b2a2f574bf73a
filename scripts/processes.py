"""Services as processes, for the benchmarks and the tests alike: a free port, waiting until a URL answers,
running `python -m ...` until a block ends and stopping its whole process group."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Mapping

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
# The proxy as deployed (docs/api.md, Processes), for running_process from the repository root.
PROXY_GUNICORN = ["-m", "gunicorn", "-c", "proxy/gunicorn.conf.py", "proxy.app:create_app()"]


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
