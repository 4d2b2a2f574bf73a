"""HF_MIRRORS that misbehave: content that does not parse is a failed source, and a busy, stalled or hanging
mirror delays one pull by seconds, then every pull skips it for MIRROR_COOLDOWN_S; mirrors get MIRROR_API_KEY,
never PROXY_API_KEY (issue 20, items 3, 4 and 9)."""
from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from tests.helpers import served
from tests.fakes.hub import Fault, FakeHub
from tests.pull_fixtures import REPO, KiB, hub, make_app, make_gguf, models_dir, pull  # noqa: F401

FILES = ("tiny.Q4_K_M.gguf", "tiny.Q8_0.gguf", "tiny.Q5_K_M.gguf")
KEY = "this-proxys-own-key"
# What production runs with: the fixtures' tiny timeouts would hide the delays this measures.
PRODUCTION = dict(hub_timeout_s=20.0, pull_stall_timeout_s=30.0, pull_max_retries=6, pull_backoff_base_s=1.0,
                  pull_backoff_max_s=30.0)


def _bad_handler(mode: str, repo: str, commit: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            html = b"<html><body>Welcome to our mirror</body></html>"
            if mode == "html":
                return self._answer(html, "text/html")
            if mode == "empty":
                return self._answer(b"{}", "application/json")
            if "/tree/" in self.path:  # "html_tree": a good model info, an HTML tree
                return self._answer(html, "text/html")
            return self._answer(b'{"id": "%s", "sha": "%s", "siblings": [], "private": false, "gated": false}'
                                % (repo.encode(), commit.encode()), "application/json")

        do_HEAD = do_GET

        def _answer(self, body: bytes, kind: str):
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


@contextlib.contextmanager
def bad_mirror(mode: str, repo: str, commit: str) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _bad_handler(mode, repo, commit))
    server.daemon_threads = True
    with served(server):
        yield f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("mode", ["html", "empty", "html_tree"])
def test_a_mirror_answering_what_does_not_parse_is_skipped_for_the_hub(make_app, hub, make_gguf, mode):
    source = make_gguf(FILES[0], 128 * KiB)
    commit = hub.add_repo(REPO, files={FILES[0]: source})
    with bad_mirror(mode, REPO, commit) as mirror:
        client = make_app(hf_mirrors=(mirror,)).test_client()

        final = pull(client, model=REPO, filename=FILES[0])[-1]

        assert final["status"] == "complete", final
        assert final["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        assert final["source_host"] == hub.url.removeprefix("http://"), "from the Hub, the next source"


def timed_pull(client, filename: str, limit_s: float = 30.0) -> tuple[dict, float]:
    """Pull in a thread, so a pull stuck behind a mirror fails the test instead of holding it for minutes."""
    done: list[dict] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: done.append(pull(client, model=REPO, filename=filename)[-1]),
                              daemon=True)
    thread.start()
    thread.join(limit_s)
    assert done, f"the pull of {filename} was still waiting after {limit_s:.0f} s"
    return done[0], time.monotonic() - started


BAD_MIRRORS = {
    "busy": lambda mirror: mirror.faults.add(Fault.status(503, times=None, retry_after="30"), on="any"),
    # asks to wait a second, again and again (a peer pulling a large file through): waited on for a while only
    "busy_briefly": lambda mirror: mirror.faults.add(Fault.status(503, times=None, retry_after="1"), on="any"),
    "stalled": lambda mirror: mirror.faults.add(Fault.stall(after_bytes=16 * KiB, times=None), on="content"),
    "hanging": lambda mirror: mirror.faults.add(Fault.hang(times=None), on="any"),
}


@pytest.mark.parametrize("kind", sorted(BAD_MIRRORS))
def test_a_bad_mirror_delays_one_pull_by_seconds_and_the_next_not_at_all(make_app, hub, make_gguf, kind):
    sources = {name: make_gguf(name, 256 * KiB) for name in FILES}
    hub.add_repo(REPO, files=sources)
    baseline_app = make_app(**PRODUCTION)
    _, baseline_s = timed_pull(baseline_app.test_client(), FILES[2])
    with FakeHub() as mirror:
        mirror.add_repo(REPO, files=sources)
        BAD_MIRRORS[kind](mirror)
        client = make_app(hf_mirrors=(mirror.url,), **PRODUCTION).test_client()

        first, first_s = timed_pull(client, FILES[0])
        second, second_s = timed_pull(client, FILES[1])
        mirror.faults.release_stalls()

    print(f"{kind} mirror: the first pull took {first_s - baseline_s:.2f} s longer than without it, "
          f"the next {second_s - baseline_s:.2f} s")
    for final, name in ((first, FILES[0]), (second, FILES[1])):
        assert final["status"] == "complete", final
        assert final["sha256"] == hashlib.sha256(sources[name].read_bytes()).hexdigest()
        assert final["source_host"] == hub.url.removeprefix("http://")
    assert first_s - baseline_s < 10.0, f"a {kind} mirror delayed the pull by {first_s - baseline_s:.1f} s"
    assert second_s - baseline_s < 1.0, "the next pull skips the mirror while it cools down"


@pytest.mark.parametrize("mirror_key", [None, "the-fleets-key"])
def test_mirrors_get_mirror_api_key_never_proxy_api_key(make_app, hub, make_gguf, mirror_key):
    source = make_gguf(FILES[0], 64 * KiB)
    hub.add_repo(REPO, files={FILES[0]: source})
    with FakeHub(tokens={"the-fleets-key"}) as mirror:
        mirror.add_repo(REPO, files={FILES[0]: source})
        fleet = {"mirror_api_key": mirror_key} if mirror_key else {}
        client = make_app(hf_mirrors=(mirror.url,), api_key=KEY, **fleet).test_client()

        final = pull(client, headers={"Authorization": f"Bearer {KEY}"}, model=REPO, filename=FILES[0])[-1]

        assert final["status"] == "complete", final
        # (its CDN, where /resolve redirects, gets no key at all: a fetch scopes it to the mirror's own host)
        shown = {record.authorization for record in mirror.requests() if record.place != "cdn"}
        assert shown == {mirror_key is not None}, "a bearer only from MIRROR_API_KEY"


def _endless_listing_handler(sent: list[int]):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # no Content-Length: the body ends when the connection does

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(b'{"id": "acme/tiny-GGUF", "siblings": [')
                while sent[0] < 150 * 1024 * KiB:
                    self.wfile.write(b" " * 1024 * KiB)
                    sent[0] += 1024 * KiB

        def log_message(self, *args):
            pass

    return Handler


def test_a_mirrors_150_mb_listing_is_not_read_past_its_cap(make_app, hub, make_gguf):
    source = make_gguf(FILES[0], 64 * KiB)
    hub.add_repo(REPO, files={FILES[0]: source})
    sent = [0]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _endless_listing_handler(sent))
    server.daemon_threads = True
    with served(server):
        client = make_app(hf_mirrors=(f"http://127.0.0.1:{server.server_address[1]}",)).test_client()
        final = pull(client, model=REPO, filename=FILES[0])[-1]

    assert final["status"] == "complete" and final["source_host"] == hub.url.removeprefix("http://"), final
    assert sent[0] < 32 * 1024 * KiB, f"the proxy read {sent[0] // (1024 * KiB)} MiB of a mirror's listing"
