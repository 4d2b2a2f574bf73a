"""What `python -m proxy pull` says when the Hub cannot be reached and when Ctrl-C stops it, as a process."""
from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
from typing import Iterator

from tests.cli_runs import cli_env
from tests.helpers import REPO_ROOT, free_port


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[str, socket.socket]]:
    """A port that takes connections and never answers; yields its URL and the listening socket."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", listener


def interrupt_once_connected(args: list[str], env: dict[str, str], listener: socket.socket) -> tuple[int, str]:
    """Run the CLI, send it SIGINT (Ctrl-C) once it connected to `listener`; its exit status and stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "proxy", *args], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        listener.settimeout(30)
        connection, _ = listener.accept()
        with connection:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        return proc.returncode, err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_ctrl_c_of_a_pull_through_a_proxy_says_the_proxy_keeps_downloading():
    with silent_server() as (url, listener):
        status, err = interrupt_once_connected(["pull", "--url", url, "acme/tiny-GGUF"], cli_env(), listener)

    assert status == 130
    assert f"interrupted: the proxy at {url} keeps downloading acme/tiny-GGUF" in err
    assert f"GET {url}/v1/api/pulls" in err


def test_ctrl_c_of_a_local_pull_says_it_stopped_and_resumes_next_time(tmp_path):
    with silent_server() as (url, listener):
        env = cli_env(HF_ENDPOINT=url, MODELS_DIR=str(tmp_path / "models"))
        status, err = interrupt_once_connected(["pull", "--local", "acme/tiny-GGUF"], env, listener)

    assert status == 130
    assert "interrupted: the pull stopped; what it downloaded stays in MODELS_DIR and the same command resumes it" in err


def test_a_local_pull_without_a_hub_says_what_it_retries_and_where(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    env = cli_env(HF_ENDPOINT=url, MODELS_DIR=str(tmp_path / "models"), PULL_MAX_RETRIES="2")

    result = subprocess.run([sys.executable, "-m", "proxy", "pull", "--local", "acme/tiny-GGUF:Q8_0"], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert f"asking {url} for acme/tiny-GGUF at revision main failed (ConnectError); retrying in" in lines[0]
    assert lines[0].endswith("attempt 2 of 2")
    assert lines[-1] == (f"error: the Hub could not be reached (ConnectError, 2 attempts); asked {url} for "
                         "acme/tiny-GGUF at revision main; check HF_ENDPOINT and the network [hub_unavailable]")
