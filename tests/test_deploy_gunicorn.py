"""The gunicorn settings the containers run with (proxy/gunicorn.conf.py).

A pull streams NDJSON for as long as a download takes, far longer than gunicorn's worker `timeout`. With the
gthread worker the timeout is a heartbeat of the worker process, not a limit on a request: gunicorn is
started here with the real config file on a tiny WSGI app of this module that streams for ~5 s, with the
timeout cut to 2 s, and the stream must complete. The same run with a copy of the config that uses the
sync worker is cut off, which shows the test can fail.
"""
from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import REPO_ROOT, free_port, stop_process, wait_http

CONFIG = REPO_ROOT / "proxy" / "gunicorn.conf.py"
WORKER = "proxy.serving.worker.ProbeFirstWorker"  # gthread, with probes apart (proxy/serving/worker.py)
STREAM_LINES = 10
STREAM_INTERVAL_S = 0.5


def slow_ndjson_app(environ, start_response):
    """WSGI app: one NDJSON line every STREAM_INTERVAL_S (~5 s in all), like a pull's progress stream."""
    if environ.get("PATH_INFO") == "/ping":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pong"]
    start_response("200 OK", [("Content-Type", "application/x-ndjson")])

    def lines():
        for index in range(STREAM_LINES):
            time.sleep(STREAM_INTERVAL_S)
            yield json.dumps({"status": "downloading", "completed": index + 1, "total": STREAM_LINES}).encode() + b"\n"
        yield json.dumps({"status": "complete"}).encode() + b"\n"

    return lines()


def stream_through_gunicorn(config: Path, log_path: Path) -> tuple[list[dict], float]:
    """Start gunicorn with `config`, --timeout 2, on slow_ndjson_app; read the whole stream."""
    port = free_port()
    args = [sys.executable, "-m", "gunicorn", "-c", str(config), "--timeout", "2", "--graceful-timeout", "2",
            "--bind", f"127.0.0.1:{port}", "tests.test_deploy_gunicorn:slow_ndjson_app"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PROXY_THREADS": "4"}, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", timeout_s=30, proc=proc)
        started = time.monotonic()
        events = []
        try:
            with requests.get(f"http://127.0.0.1:{port}/pull", stream=True, timeout=(5, 15)) as response:
                for line in response.iter_lines():
                    if line:
                        events.append(json.loads(line))
        except requests.RequestException:
            pass  # a worker killed mid-stream cuts the connection: the events so far tell
        return events, time.monotonic() - started
    finally:
        stop_process(proc)


def config_problems(path: Path) -> list[str]:
    """What a read-only, long-streaming container needs of the gunicorn settings."""
    settings = runpy.run_path(str(path))
    problems = []
    if settings.get("worker_class") not in ("gthread", WORKER) or settings.get("threads", 1) < 4:
        problems.append("not the gthread worker with threads")
    if settings.get("worker_tmp_dir") != "/dev/shm":
        problems.append("the heartbeat file is not in /dev/shm (the root filesystem is read-only)")
    if settings.get("control_socket_disable") is not True:
        problems.append("the control socket is not disabled (it would be created in a read-only directory)")
    # The pod's grace period (k8s/deployment.yaml: 60 s) must outlast the graceful shutdown.
    if not settings.get("graceful_timeout", 30) < 60:
        problems.append("graceful_timeout does not fit in the pod's grace period")
    return problems


def test_config_sets_gthread_memory_heartbeat_and_no_control_socket():
    assert config_problems(CONFIG) == []


@pytest.mark.parametrize("setting, value", [
    (f'worker_class = "{WORKER}"', 'worker_class = "sync"'),
    ("control_socket_disable = True", "control_socket_disable = False"),
    ('worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None', "worker_tmp_dir = None"),
    ("graceful_timeout = proxy_settings.graceful_timeout_s", "graceful_timeout = 90"),
], ids=["sync-worker", "control-socket", "tmp-heartbeat", "long-graceful"])
def test_config_check_rejects_broken_copy(tmp_path, setting, value):
    text = CONFIG.read_text()
    assert setting in text
    (tmp_path / "gunicorn.conf.py").write_text(text.replace(setting, value))
    assert config_problems(tmp_path / "gunicorn.conf.py") != []


def test_pull_stream_longer_than_worker_timeout_completes(tmp_path):
    events, elapsed_s = stream_through_gunicorn(CONFIG, tmp_path / "gunicorn.log")
    assert elapsed_s > 4, "the stream should outlast the 2 s worker timeout"
    assert len(events) == STREAM_LINES + 1, (tmp_path / "gunicorn.log").read_text()[-3000:]
    assert events[-1] == {"status": "complete"}


def test_stream_check_fails_with_a_sync_worker(tmp_path):
    """A broken copy of the config (sync worker) lets the 2 s timeout kill the worker mid-stream."""
    text = CONFIG.read_text()
    threads = "threads = proxy_settings.forward_max_in_flight + proxy_settings.proxy_threads"
    assert f'worker_class = "{WORKER}"' in text and threads in text
    broken = tmp_path / "gunicorn.conf.py"
    # gunicorn turns sync into gthread when threads > 1, so the copy also needs one thread.
    broken.write_text(text.replace(f'worker_class = "{WORKER}"', 'worker_class = "sync"').replace(threads, "threads = 1"))
    events, _ = stream_through_gunicorn(broken, tmp_path / "gunicorn.log")
    assert events[-1:] != [{"status": "complete"}]
