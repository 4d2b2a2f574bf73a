"""Probes on their own path (issue 28, item 2): the proxy under gunicorn with its own config answers /livez,
/readyz and /v1/health within a second while 41 connections have sent half a request and stopped, 24 forwarded
streams run and 20 pull streams are read, and a connection whose request never completes is closed
(proxy/serving/worker.py). It prints the probes' p99 and max latency."""
from __future__ import annotations

import socket
import threading
import time

import requests

from proxy.serving.worker import MAX_ARRIVING_PER_ADDRESS
from tests.helpers import p99
from tests.proxy_processes import ChatStream, HttpStream, fake_backend, probe_latencies, proxy_process
from tests.pull_fixtures import TOKEN, wait_until

REPO = "probes/slow"
FILE = "slow-Q4_K_M.gguf"
HALF_OPEN = 41
STREAMS = 24
PULLS = 20


def half_open(url: str, count: int) -> list[socket.socket]:
    """`count` connections that sent the start of a request and nothing more."""
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
        sockets.append(sock)
    return sockets


def test_probes_answer_within_a_second_beside_half_open_connections_streams_and_pulls(
        hub, make_gguf, models_dir, tmp_path):
    hub.add_repo(REPO, files={FILE: make_gguf(FILE, 4 << 20)}, private=True, readers={TOKEN})
    hub.throttle_bps = 64 << 10  # the pull runs for a minute: its 20 streams stay open
    with fake_backend(tmp_path / "backend.log", events=40, interval_s=0.5) as backend, \
            proxy_process(models_dir, hub, tmp_path / "proxy.log", BACKEND_URL=backend.url) as proxy:
        stalled = half_open(proxy.url, HALF_OPEN)
        streams = [ChatStream(proxy.url) for _ in range(STREAMS)]
        pulls = [HttpStream(proxy, model=REPO, filename=FILE) for _ in range(PULLS)]
        wait_until(lambda: sum(s.status == 200 for s in streams) == STREAMS, timeout_s=30, what="streams under way")
        probes: dict[str, list[float]] = {}
        threads = [threading.Thread(target=lambda p=path: probes.__setitem__(p, probe_latencies(proxy.url + p, 3.0)))
                   for path in ("/livez", "/readyz", "/v1/health")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert all(not pull.events or pull.events[-1]["status"] != "complete" for pull in pulls), "pulls still run"
        for sock in stalled:
            sock.close()
        for stream in streams:
            stream.finish()

    report = {path: (round(p99(values), 3), round(max(values), 3), len(values)) for path, values in probes.items()}
    print(f"probe latency beside {HALF_OPEN} half-open, {STREAMS} streams, {PULLS} pulls (p99 s, max s, n): {report}")
    assert set(report) == {"/livez", "/readyz", "/v1/health"}
    assert all(p99_s < 1 and max_s < 2 for p99_s, max_s, _ in report.values()), report


def test_one_address_may_have_only_so_many_requests_arriving(hub, models_dir, tmp_path):
    with proxy_process(models_dir, hub, tmp_path / "proxy.log") as proxy:
        stalled = half_open(proxy.url, MAX_ARRIVING_PER_ADDRESS + 3)
        # Past the cap, the address's newest connections are closed at once (read: the server's end of file).
        closed: set[socket.socket] = set()
        wait_until(lambda: closed.update(s for s in stalled if s not in closed and _closed(s)) or len(closed) >= 3,
                   timeout_s=10, what="connections past the cap closed")
        assert len(closed) == 3 and all(s in closed for s in stalled[-3:])
        for sock in stalled:
            sock.close()
        wait_until(lambda: _answers(proxy.url + "/livez"), timeout_s=10,
                   what="the address served again once its stalled requests are gone")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except (socket.timeout, BlockingIOError):
        return False
    except OSError:
        return True
