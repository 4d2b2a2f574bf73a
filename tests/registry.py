"""The registry as the tests use it: scripts/registry.py's process (a test without docker-registry is `unavailable`),
a module fixture of it, a Bearer-token front for it and a quiet handler for hostile test servers."""
from __future__ import annotations

import contextlib
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator

import pytest
import requests

from scripts.registry import MISSING, REGISTRY_BIN, Registry, registry_process
from tests.helpers import unavailable


@contextlib.contextmanager
def running_registry(tmp: Path, htpasswd: tuple[str, str] | None = None) -> Iterator[Registry]:
    """scripts/registry.py's registry for a test: storage under `tmp`, Basic auth with `htpasswd` (user, password)."""
    if not Path(REGISTRY_BIN).exists():
        unavailable(MISSING)
    with registry_process(tmp, htpasswd) as running:
        yield running


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Registry]:
    """A running registry for one test module (import this fixture into the module)."""
    with running_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


class BearerFront:
    """A registry front that demands Bearer tokens from its own token endpoint and forwards to a real
    registry (which cannot issue tokens without a certificate setup); blobs are redirected to a second
    server, the "blob store", which records the Authorization headers it was sent.

    `users`: user -> password the token endpoint accepts; `anonymous`: tokens without credentials too;
    `refresh_tokens`: identity tokens it takes in an OAuth2 refresh grant (a form POST to the realm, answered
    with `access_token`, or 400 `invalid_grant`), each grant's form recorded in `grants` without the token.
    """

    def __init__(self, registry: Registry, users: dict[str, str] | None = None, anonymous: bool = False,
                 token_ttl_s: int = 300, push: bool = False, refresh_tokens: set[str] | None = None):
        self.registry, self.users, self.anonymous, self.token_ttl_s = registry, users or {}, anonymous, token_ttl_s
        self.refresh_tokens = refresh_tokens or set()
        self.grants: list[dict[str, str]] = []
        self.push = push  # writes (HEAD, POST, PUT) pass too, with a token of scope `pull,push`
        self.scopes: list[str] = []
        self.issued: list[str] = []
        self.store_auth_headers: list[str | None] = []
        self.realm: str | None = None  # the token realm its challenges name; None: its own /token
        self._servers = []

    def grants_scope(self, scope: str) -> bool:
        """Whether a token may be issued for `scope`: reads always, writes (`pull,push`) on a push front."""
        return scope.endswith(":pull") or (self.push and scope.endswith(":pull,push"))

    def __enter__(self) -> "BearerFront":
        import threading
        from http.server import ThreadingHTTPServer

        front, store = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "front")), \
            ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "store"))
        for server in (front, store):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self._servers = [front, store]
        self.host = f"127.0.0.1:{front.server_address[1]}"
        self.url, self.store_url = f"http://{self.host}", f"http://127.0.0.1:{store.server_address[1]}"
        return self

    def __exit__(self, *exc) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def _handler(front: BearerFront, role: str):
    import base64
    import secrets
    from urllib.parse import parse_qs, urlsplit

    class Handler(AnsweringHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            path = urlsplit(self.path).path
            if role == "store":
                front.store_auth_headers.append(self.headers.get("Authorization"))
                return self._forward(path)
            if path == "/token":
                return self._token()
            if self.headers.get("Authorization", "").removeprefix("Bearer ") not in front.issued:
                repo = path.removeprefix("/v2/").rsplit("/", 2)[0]
                challenge = (f'Bearer realm="{front.realm or front.url + "/token"}",service="front",'
                             f'scope="repository:{repo}:pull"')
                return self._answer(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
            if "/blobs/" in path:
                return self._answer(307, b"", {"Location": front.store_url + path})
            self._forward(path)

        def _token(self):
            user, _, password = base64.b64decode(self.headers.get("Authorization", "Basic ")[6:] or b"") \
                .decode().partition(":")
            scope = parse_qs(urlsplit(self.path).query).get("scope", [""])[0]
            front.scopes.append(scope)
            if not ((user and front.users.get(user) == password) or (not user and front.anonymous)) \
                    or not front.grants_scope(scope):
                return self._answer(401, b'{"details":"bad credentials"}', {})
            token = secrets.token_hex(8)
            front.issued.append(token)
            body = json.dumps({"token": token, "expires_in": front.token_ttl_s}).encode()
            self._answer(200, body, {"Content-Type": "application/json"})

        def do_HEAD(self):
            self._write()

        def do_POST(self):
            if role == "front" and urlsplit(self.path).path == "/token":
                return self._refresh_grant()
            self._write()

        def _refresh_grant(self):
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0))
                                                 .decode()).items()}
            token = form.pop("refresh_token", None)
            front.grants.append(form)
            scope = form.get("scope", "")
            front.scopes.append(scope)
            if form.get("grant_type") != "refresh_token" or token not in front.refresh_tokens \
                    or not front.grants_scope(scope):
                return self._answer(400, b'{"error":"invalid_grant"}', {"Content-Type": "application/json"})
            issued = secrets.token_hex(8)
            front.issued.append(issued)
            body = json.dumps({"access_token": issued, "expires_in": front.token_ttl_s}).encode()
            self._answer(200, body, {"Content-Type": "application/json"})

        def do_PUT(self):
            self._write()

        def _write(self):
            """A write (or HEAD) passed on to the registry when it carries a push token; the registry's
            upload Location points at the registry itself."""
            if not front.push or self.headers.get("Authorization", "").removeprefix("Bearer ") not in front.issued:
                repo = urlsplit(self.path).path.removeprefix("/v2/").split("/blobs/")[0].split("/manifests/")[0]
                challenge = (f'Bearer realm="{front.url}/token",service="front",'
                             f'scope="repository:{repo}:pull,push"')
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                denied = b"" if self.command == "HEAD" else b'{"errors":[{"code":"UNAUTHORIZED"}]}'  # HEAD: no body
                return self._answer(401, denied, {"WWW-Authenticate": challenge})
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() == "content-type"}
            upstream = requests.request(self.command, front.registry.url + self.path, data=body, headers=headers,
                                        timeout=30, allow_redirects=False)
            keep = {k: v for k, v in upstream.headers.items()
                    if k.lower() in ("location", "docker-content-digest", "docker-upload-uuid")}
            self._answer(upstream.status_code, b"" if self.command == "HEAD" else upstream.content, keep)

        def _forward(self, path: str):
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "range")}
            upstream = requests.get(front.registry.url + path, headers=headers, timeout=30)
            keep = {k: v for k, v in upstream.headers.items()
                    if k.lower() in ("content-type", "docker-content-digest", "content-range")}
            self._answer(upstream.status_code, upstream.content, keep)

    return Handler


class AnsweringHandler(BaseHTTPRequestHandler):
    """A test server's handler that answers whole bodies with their length, and logs nothing."""

    def _answer(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass

