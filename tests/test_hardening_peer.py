"""Pull-through behind PROXY_API_KEY, misses that never hold request threads, and peer routes that answer odd
names with the Hub's 404 (issue 20, items 1, 2 and 10)."""
from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
import requests

from proxy.services import services_of
from scripts.stack import proxy
from tests.helpers import free_port, p99, served, serving, wait_served
from tests.pull_fixtures import REPO, KiB, hub, make_app, make_gguf, models_dir  # noqa: F401

FILE = "tiny.Q4_K_M.gguf"
KEY = "fleet-key"
MISSES = 80


def test_a_keyless_miss_does_not_pull_through_when_a_key_is_set(make_app, hub, make_gguf):
    source = make_gguf(FILE, 128 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    app = make_app(mirror_pull_through=True, api_key=KEY)
    with serving(app) as url:
        hub.clear_log()
        keyless = requests.get(f"{url}/{REPO}/resolve/main/{FILE}", timeout=10)
        listing = requests.get(f"{url}/api/models/{REPO}", timeout=10)

        assert (keyless.status_code, keyless.headers.get("X-Error-Code")) == (404, "RepoNotFound"), keyless.text
        assert listing.status_code == 404, "a keyless listing of a repo it does not hold: the Hub's 404"
        assert hub.requests() == [], "a keyless miss asks the Hub nothing"
        assert services_of(app).pulls.jobs() == [], "and starts no pull"

        served = wait_served(f"{url}/{REPO}/resolve/main/{FILE}", headers={"Authorization": f"Bearer {KEY}"})
        assert served.status_code == 200 and served.content == source.read_bytes(), "with the key it pulls through"


@pytest.mark.parametrize("path", ["/api/models/%2e%2e/%2e%2e", "/api/models/-a/b", "/api/models/a/b%0A",
                                  "/api/models/a/b/revision/x%0A", "/api/models/a/b/tree/..",
                                  "/api/models/a%20b/c/refs", "/a/b%0A/resolve/main/x.gguf",
                                  "/a/b/resolve/main/..%2Fx.gguf", "/a/b/resolve/main/x%0A.gguf",
                                  "/a/b/resolve/ma%0Ain/x.gguf", "/..%2F../b/resolve/main/x.gguf"])
def test_odd_names_on_peer_routes_are_the_hubs_404(make_app, hub, path):
    client = make_app(mirror_pull_through=True).test_client()
    hub.clear_log()

    response = client.get(path)

    assert response.status_code == 404, (path, response.status_code, response.get_data(as_text=True)[:200])
    assert response.headers.get("X-Error-Code") in ("RepoNotFound", "RevisionNotFound", "EntryNotFound", None)
    assert hub.requests() == [], "nothing a pull would refuse reaches the Hub"


class SlowHub(ThreadingHTTPServer):
    """A Hub that takes `delay_s` to answer anything, and knows no repo (404 RepoNotFound)."""

    daemon_threads = True

    def __init__(self, delay_s: float):
        self.delay_s, self.asked = delay_s, 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _slow_handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _slow_handler():
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            with self.server.lock:
                self.server.asked += 1
            time.sleep(self.server.delay_s)
            body = b'{"error":"Repository not found"}'
            self.send_response(404)
            for key, value in (("X-Error-Code", "RepoNotFound"), ("Content-Type", "application/json"),
                               ("Content-Length", str(len(body)))):
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    return Handler


@contextlib.contextmanager
def slow_hub(delay_s: float) -> Iterator[SlowHub]:
    with served(SlowHub(delay_s)) as server:
        yield server


def probe_latencies(url: str, stop: threading.Event) -> list[float]:
    """GET /livez back to back until `stop`; each answer's seconds."""
    seconds = []
    with requests.Session() as session:
        while not stop.is_set():
            started = time.monotonic()
            assert session.get(f"{url}/livez", timeout=30).status_code == 200
            seconds.append(time.monotonic() - started)
            time.sleep(0.02)
    return seconds


def test_a_flood_of_pull_through_misses_never_delays_the_probes(tmp_path):
    dead_backend = f"http://127.0.0.1:{free_port()}"
    with slow_hub(delay_s=2.0) as upstream, \
            proxy(tmp_path / "models", tmp_path, upstream.url, dead_backend,
                  env={"MIRROR_PULL_THROUGH": "true"}) as (url, _):
        stop = threading.Event()
        with ThreadPoolExecutor(MISSES + 1) as pool:
            probes = pool.submit(probe_latencies, url, stop)
            time.sleep(0.2)

            def miss(i: int) -> tuple[int, float]:
                started = time.monotonic()
                response = requests.get(f"{url}/owner{i}/repo{i}/resolve/main/model.Q4_K_M.gguf", timeout=60)
                return response.status_code, time.monotonic() - started

            answers = list(pool.map(miss, range(MISSES)))
            time.sleep(1.0)
            stop.set()
            latencies = probes.result()

        p99_s = p99(latencies)
        print(f"/livez under {MISSES} pull-through misses: max {max(latencies) * 1000:.0f} ms, "
              f"p99 {p99_s * 1000:.0f} ms over {len(latencies)} probes; slowest miss answer "
              f"{max(s for _, s in answers) * 1000:.0f} ms; the Hub was asked {upstream.asked} times")
        # The contract's second for the probes as a whole; one may meet the scheduler of two cores shared by
        # 80 client threads and the proxy, and is allowed twice that.
        assert p99_s < 1.0 and max(latencies) < 2.0, f"/livez p99 {p99_s:.2f} s, max {max(latencies):.2f} s under the flood"
        assert {status for status, _ in answers} <= {503, 404}, answers
        assert max(s for _, s in answers) < 1.0, "every miss is answered at once"
        retry = requests.get(f"{url}/owner0/repo0/resolve/main/model.Q4_K_M.gguf", timeout=10)
        assert retry.status_code in (503, 404)


def test_an_empty_suffix_range_is_416(make_app, hub, make_gguf):
    source = make_gguf(FILE, 64 * KiB)
    hub.add_repo(REPO, files={FILE: source})
    client = make_app().test_client()
    assert client.post("/v1/api/pull", json={"model": REPO, "filename": FILE, "stream": False}).status_code == 200

    empty = client.get(f"/{REPO}/resolve/main/{FILE}", headers={"Range": "bytes=-0"})
    last = client.get(f"/{REPO}/resolve/main/{FILE}", headers={"Range": "bytes=-1"})

    assert empty.status_code == 416 and empty.headers["Content-Range"] == f"bytes */{64 * KiB}"
    assert last.status_code == 206 and last.data == source.read_bytes()[-1:]
