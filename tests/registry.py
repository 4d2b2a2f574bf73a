"""A real OCI distribution registry (Debian's docker-registry, CNCF distribution 2.8) for the tests, and
publishing artifacts to it with plain calls of the distribution API."""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.helpers import free_port, running_process, unavailable

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
DMR_GGUF = "application/vnd.docker.ai.gguf.v3"
DMR_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
TITLE = "org.opencontainers.image.title"


@dataclass
class Registry:
    url: str
    host: str  # 127.0.0.1:PORT
    storage: Path
    auth: tuple[str, str] | None = None

    def put_blob(self, repo: str, data: bytes | Path) -> tuple[str, int]:
        """Upload one blob (monolithic POST then PUT with its digest); its digest and size."""
        digest = "sha256:" + (hashlib.sha256(data).hexdigest() if isinstance(data, bytes)
                              else _file_sha256(data))
        started = requests.post(f"{self.url}/v2/{repo}/blobs/uploads/", auth=self.auth, timeout=30)
        assert started.status_code == 202, started.text
        location = requests.compat.urljoin(self.url, started.headers["Location"])
        with contextlib.ExitStack() as stack:
            body = data if isinstance(data, bytes) else stack.enter_context(open(data, "rb"))
            done = requests.put(location, params={"digest": digest}, data=body, auth=self.auth, timeout=300,
                                headers={"Content-Type": "application/octet-stream"})
        assert done.status_code == 201, done.text
        size = len(data) if isinstance(data, bytes) else data.stat().st_size
        return digest, size

    def put_manifest(self, repo: str, reference: str, manifest: dict, media_type: str) -> str:
        body = json.dumps(manifest).encode()
        response = requests.put(f"{self.url}/v2/{repo}/manifests/{reference}", data=body, auth=self.auth,
                                headers={"Content-Type": media_type}, timeout=30)
        assert response.status_code == 201, response.text
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def publish(self, repo: str, tag: str, layers: list[tuple[Path, str, dict | None]],
                manifest_type: str = OCI_MANIFEST, config_type: str = DMR_CONFIG) -> str:
        """Publish a model artifact: a config blob and one layer per (file, media type, annotations);
        the manifest's digest."""
        config = json.dumps({"config": {"format": "gguf"}}).encode()
        config_digest, config_size = self.put_blob(repo, config)
        descriptors = []
        for path, media_type, annotations in layers:
            digest, size = self.put_blob(repo, path)
            descriptors.append({"mediaType": media_type, "digest": digest, "size": size,
                                **({"annotations": annotations} if annotations else {})})
        manifest = {"schemaVersion": 2, "mediaType": manifest_type,
                    "config": {"mediaType": config_type, "digest": config_digest, "size": config_size},
                    "layers": descriptors}
        return self.put_manifest(repo, tag, manifest, manifest_type)

    def blob_path(self, digest: str) -> Path:
        hexdigest = digest.partition(":")[2]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


@contextlib.contextmanager
def running_registry(tmp: Path, htpasswd: tuple[str, str] | None = None) -> Iterator[Registry]:
    """The real registry on a free 127.0.0.1 port with its storage under `tmp`; with `htpasswd`
    (user, password), it demands Basic auth."""
    if not Path(REGISTRY_BIN).exists():
        unavailable("docker-registry is not installed (apt-get install docker-registry apache2-utils)")
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = ""
    if htpasswd:
        line = subprocess.run(["htpasswd", "-Bbn", *htpasswd], check=True, capture_output=True, text=True).stdout
        (tmp / "htpasswd").write_text(line)
        auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {tmp / 'htpasswd'}\n"
    config = tmp / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "
                      f"{tmp / 'storage'}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}")
    url = f"http://127.0.0.1:{port}"
    with running_process([REGISTRY_BIN, "serve", str(config)], {}, url + "/v2/", tmp / "registry.log"):
        yield Registry(url, f"127.0.0.1:{port}", tmp / "storage", htpasswd)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Registry]:
    """A running registry for one test module (import this fixture into the module)."""
    with running_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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

