"""Registries that misbehave, in front of the real distribution registry: bodies read through a size cap (a
150 MB manifest or token body does not grow the proxy), token realms that may not get credentials, absurd
token lifetimes, references that cannot be right (issue 20, items 5, 9, 10 and 11)."""
from __future__ import annotations

import contextlib
import json
import socket
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import requests

from scripts.stack import peak_rss_mb, proxy
from tests.helpers import free_port, served
from tests.pull_fixtures import hub, make_app, make_gguf, models_dir  # noqa: F401
from scripts.registry import DMR_GGUF
from tests.registry import AnsweringHandler, BearerFront, registry  # noqa: F401

HUGE_BYTES = 150 * 1024 * 1024
BLOCK = b" " * (1024 * 1024)


class HostileFront(ThreadingHTTPServer):
    """Forwards to the real registry, except what `mode` spoils: "manifest" streams a 150 MB manifest body
    (no Content-Length, as an endless one would), "token" demands a Bearer token whose realm streams 150 MB,
    "eternal_token" issues a token with `expires_in` 10**400. `sent` counts the spoiled body bytes sent."""

    daemon_threads = True

    def __init__(self, registry_url: str, mode: str):
        self.registry_url, self.mode, self.sent, self.token = registry_url, mode, 0, "t0ken"
        super().__init__(("127.0.0.1", 0), _front_handler())
        self.host = f"127.0.0.1:{self.server_address[1]}"


def _front_handler():
    class Handler(AnsweringHandler):
        protocol_version = "HTTP/1.0"  # a body without Content-Length ends when the connection closes

        def do_GET(self):
            front = self.server
            if self.path.startswith("/token"):
                if front.mode == "token":
                    return self._stream_huge(b'{"token": "')
                return self._answer(200, b'{"token": "%s", "expires_in": 1%s}' % (front.token.encode(),
                                                                                  b"0" * 400))
            if front.mode in ("token", "eternal_token") and \
                    self.headers.get("Authorization") != f"Bearer {front.token}" and self.path != "/v2/":
                challenge = f'Bearer realm="http://{front.host}/token",service="front"'
                return self._answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
            if front.mode == "manifest" and "/manifests/" in self.path:
                return self._stream_huge(b'{"schemaVersion": 2, "layers": [')
            upstream = requests.get(front.registry_url + self.path, timeout=30,
                                    headers={k: v for k, v in self.headers.items() if k.lower() == "accept"})
            self._answer(upstream.status_code, upstream.content,
                         {"Content-Type": upstream.headers.get("Content-Type", "application/json")})

        def _stream_huge(self, start: bytes):
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(start)
                while self.server.sent < HUGE_BYTES:
                    self.wfile.write(BLOCK)
                    self.server.sent += len(BLOCK)

    return Handler


@contextlib.contextmanager
def hostile_front(registry_url: str, mode: str) -> Iterator[HostileFront]:
    with served(HostileFront(registry_url, mode)) as server:
        yield server


@pytest.mark.parametrize("mode", ["manifest", "token"])
def test_a_150_mb_body_is_not_read_past_its_cap(registry, make_gguf, tmp_path, mode):
    registry.publish("models/tiny", "v1", [(make_gguf("tiny.gguf"), DMR_GGUF, None)])
    dead_backend = f"http://127.0.0.1:{free_port()}"
    with hostile_front(registry.url, mode) as front, \
            proxy(tmp_path / "models", tmp_path, "http://127.0.0.1:9", dead_backend,
                  env={"INSECURE_REGISTRIES": front.host}) as (url, process):
        started_mb = peak_rss_mb(process.pid)
        started = time.monotonic()
        answer = requests.post(f"{url}/v1/api/pull", json={"model": f"oci://{front.host}/models/tiny:v1",
                                                             "stream": False}, timeout=120)
        took_s = time.monotonic() - started
        peak_mb = peak_rss_mb(process.pid)

    print(f"a 150 MB {mode} body: {answer.status_code} {answer.json().get('code')} in {took_s:.1f} s; "
          f"{front.sent / 2**20:.0f} MiB sent; worker peak RSS {started_mb:.0f} MB at start, {peak_mb:.0f} MB after")
    assert (answer.status_code, answer.json()["code"]) == (502, "hub_unavailable"), answer.text
    assert front.sent < 32 * 2**20, f"the proxy read {front.sent / 2**20:.0f} MiB of the body"
    assert peak_mb - started_mb < 50, f"the worker grew from {started_mb:.0f} MB to {peak_mb:.0f} MB"


def registry_app(make_app, tmp_path: Path, host: str, auths: dict | None = None):
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": auths or {}}))
    return make_app(insecure_registries=(host,), registry_auth_file=str(auth_file))


def test_a_plain_http_token_realm_on_another_host_gets_nothing(registry, make_app, make_gguf, tmp_path):
    registry.publish("models/tiny", "v1", [(make_gguf("tiny.gguf"), DMR_GGUF, None)])
    with BearerFront(registry, users={"user": "secret"}) as front:
        front.realm = f"http://localhost:{front.host.rsplit(':', 1)[1]}/token"  # same machine, another host
        client = registry_app(make_app, tmp_path, front.host,
                              {front.host: {"username": "user", "password": "secret"}}).test_client()

        answer = client.post("/v1/api/pull", json={"model": f"oci://{front.host}/models/tiny:v1"})

        assert (answer.status_code, answer.get_json()["code"]) == (502, "source_auth_failed"), answer.get_json()
        assert "localhost" in answer.get_json()["error"] and "secret" not in answer.get_data(as_text=True)
        assert front.scopes == [], "the realm received no request, so no credentials"

        front.realm = None  # its own host: the credentials go there and the pull works
        assert client.post("/v1/api/pull", json={"model": f"oci://{front.host}/models/tiny:v1",
                                                 "stream": False}).status_code == 200


def test_a_token_that_expires_in_10_to_the_400_is_no_500(registry, make_app, make_gguf, tmp_path):
    registry.publish("models/tiny", "v1", [(make_gguf("tiny.gguf"), DMR_GGUF, None)])
    with hostile_front(registry.url, "eternal_token") as front:
        client = registry_app(make_app, tmp_path, front.host).test_client()

        answer = client.post("/v1/api/pull", json={"model": f"oci://{front.host}/models/tiny:v1", "stream": False})

        assert answer.status_code == 200 and answer.get_json()["status"] == "complete", answer.get_json()


@pytest.mark.parametrize("model", ["oci://localhost:99999/x:t", "oci://localhost:0/x:t", "owner/name\n",
                                   "oci://localhost:5000/m/x:t\n", "ollama://gemma3:270m\n", "owner/name:Q4_K_M\n"])
def test_references_that_cannot_be_right_are_400_at_once(make_app, hub, model):
    client = make_app().test_client()
    started = time.monotonic()

    answer = client.post("/v1/api/pull", json={"model": model})

    assert answer.status_code == 400 and answer.get_json()["code"] in ("invalid_repo_id", "invalid_request")
    assert time.monotonic() - started < 1.0
    assert hub.requests() == []


def test_a_registry_that_never_answers_is_given_up_on_after_its_timeout(make_app, hub):
    """Not PULL_MAX_RETRIES timeouts in a row (2 minutes and more with the defaults) before any status."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog) and never answers
    host = f"127.0.0.1:{silent.getsockname()[1]}"
    try:
        client = make_app(insecure_registries=(host,), hub_timeout_s=1.0, pull_max_retries=6,
                          pull_backoff_base_s=0.5, pull_backoff_max_s=1.0).test_client()
        started = time.monotonic()
        answer = client.post("/v1/api/pull", json={"model": f"oci://{host}/models/tiny:v1"})
        took_s = time.monotonic() - started
    finally:
        silent.close()

    assert (answer.status_code, answer.get_json()["code"]) == (502, "hub_unavailable")
    assert took_s < 3.5, f"{took_s:.1f} s before any status"
