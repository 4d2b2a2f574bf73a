"""Registry credentials as Docker keeps them (config.json), and the answers to a registry's challenges:
Basic, and the Bearer token flow (anonymous tokens too), each token reused until it expires.

Credentials and tokens never reach a log line, a message, or a host other than the one they are for.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import urlsplit

import requests

from proxy.errors import ErrorCode, ProxyError
from proxy.sources.bounded import TOKEN_MAX_BYTES, json_capped

log = logging.getLogger(__name__)
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_HOSTS = ("registry-1.docker.io", "docker.io", "index.docker.io")
TOKEN_TTL_DEFAULT_S = 60  # the token spec's default when a token endpoint names no expiry
TOKEN_TTL_MAX_S = 24 * 3600  # a longer (or absurd) expires_in is taken as this
EXPIRY_MARGIN_S = 10
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Credentials:
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)

    def basic(self) -> str | None:
        if self.username is None or self.password is None:
            return None
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def default_auth_file(docker_config: str | None) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`."""
    return Path(docker_config or Path.home() / ".docker") / "config.json"


def load_auth_file(path: Path, required: bool) -> dict[str, Credentials]:
    """host[:port] -> credentials from a Docker config.json. A missing default file means no credentials.

    Raises:
        ValueError: the file is `required` (REGISTRY_AUTH_FILE was set) and unreadable, or it is malformed.
    """
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        if required:
            raise ValueError(f"REGISTRY_AUTH_FILE {path} does not exist") from None
        return {}
    except (OSError, ValueError) as err:
        if not required:
            log.warning("ignoring %s: not a readable JSON file (%s)", path, type(err).__name__)
            return {}
        raise ValueError(f"REGISTRY_AUTH_FILE {path} is not a readable JSON file ({type(err).__name__})") from None
    auths = raw.get("auths", {}) if isinstance(raw, dict) else None
    if not isinstance(auths, dict):
        raise ValueError(f"registry auth file {path}: 'auths' must be an object of registry -> credentials")
    return {_host_of_key(key): _credentials(path, key, entry) for key, entry in auths.items()}


def _credentials(path: Path, key: str, entry: object) -> Credentials:
    """Raises: ValueError naming the entry (never its content)."""
    if not isinstance(entry, dict):
        raise ValueError(f"registry auth file {path}: the entry for {key} must be an object")
    username, password = entry.get("username"), entry.get("password")
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (ValueError, TypeError):
            raise ValueError(f"registry auth file {path}: the 'auth' of {key} is not base64 of user:password") \
                from None
    token = entry.get("identitytoken")
    if not all(v is None or isinstance(v, str) for v in (username, password, token)):
        raise ValueError(f"registry auth file {path}: the credentials of {key} must be strings")
    return Credentials(username, password, token or None)


def _host_of_key(key: str) -> str:
    """`host[:port]`, `https://host[:port]/...` or Docker Hub's index URL, as the host it is for."""
    if key == DOCKER_HUB_KEY:
        return DOCKER_HUB_HOSTS[0]
    return re.sub(r"^[a-z]+://", "", key).split("/")[0].lower()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` -> ("bearer", {realm, service, scope})."""
    scheme, _, params = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM_RE.findall(params))


class RegistryAuth:
    """The Authorization header for each (registry host, repository), learned from its challenges."""

    def __init__(self, credentials: Mapping[str, Credentials], session: requests.Session, timeout_s: float):
        self._credentials = dict(credentials)
        self._session, self._timeout_s = session, timeout_s
        self._lock = threading.Lock()
        self._headers: dict[tuple[str, str], tuple[str, float]] = {}  # (host, repo) -> (header, expires at)
        self._challenges: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}

    def credentials_for(self, host: str) -> Credentials | None:
        found = self._credentials.get(host)
        if found is None and host in DOCKER_HUB_HOSTS:
            found = next((self._credentials[h] for h in DOCKER_HUB_HOSTS if h in self._credentials), None)
        return found

    def header(self, host: str, repository: str) -> str | None:
        """The Authorization value to send now, renewing an expired token; None before any challenge.

        Raises:
            ProxyError: source_auth_failed, hub_unavailable (from a token endpoint).
        """
        key = (host, repository)
        with self._lock:
            cached = self._headers.get(key)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            challenge = self._challenges.get(key)
        return self.answer(host, repository, *challenge) if challenge else None

    def answer(self, host: str, repository: str, scheme: str, params: dict[str, str]) -> str:
        """Answer a `WWW-Authenticate` challenge; the header to retry with (remembered for later requests).

        Raises:
            ProxyError: source_auth_failed (no credentials where they are needed, or refused),
                hub_unavailable (a token endpoint that cannot be reached).
        """
        creds = self.credentials_for(host)
        if scheme == "basic":
            value = creds.basic() if creds else None
            if value is None:
                raise _refused(host, repository, "asks for credentials and none are configured")
            expires = float("inf")
        elif scheme == "bearer" and params.get("realm"):
            value, expires = self._token(host, repository, params, creds)
        else:
            raise _refused(host, repository, f"asks for {scheme or 'an unknown'} authentication")
        with self._lock:
            self._challenges[(host, repository)] = (scheme, params)
            self._headers[(host, repository)] = (value, expires)
        return value

    def widen(self, host: str, repository: str, scope: str) -> bool:
        """Ask a Bearer registry's realm for a token of `scope` for later requests to `repository` (a
        cross-repository mount needs `pull` on the source repository too); whether it gave one. Registries
        without a Bearer challenge so far need nothing: True.

        Raises:
            ProxyError: hub_unavailable (the token endpoint cannot be reached).
        """
        with self._lock:
            challenge = self._challenges.get((host, repository))
        if challenge is None or challenge[0] != "bearer" or challenge[1].get("scope") == scope:
            return True
        try:
            self.answer(host, repository, "bearer", {**challenge[1], "scope": scope})
        except ProxyError as err:
            if err.code != ErrorCode.SOURCE_AUTH_FAILED:
                raise
            return False
        return True

    def _token(self, host: str, repository: str, params: dict[str, str],
               creds: Credentials | None) -> tuple[str, float]:
        """A Bearer token from the challenge's realm: with Basic credentials, an identity token (OAuth2
        refresh grant), or anonymous."""
        query = {"service": params.get("service", host), "scope": params.get("scope") or f"repository:{repository}:pull"}
        _check_realm(host, repository, params["realm"])
        try:
            if creds and creds.identity_token:
                response = self._session.post(params["realm"], timeout=self._timeout_s, stream=True, data={
                    **query, "grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": "gguf-proxy"})
            else:
                basic = creds.basic() if creds else None
                response = self._session.get(params["realm"], params=query, timeout=self._timeout_s, stream=True,
                                             headers={"Authorization": basic} if basic else {})
        except requests.RequestException as err:
            raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"the token endpoint of {host} could not be reached "
                             f"({type(err).__name__})") from err
        # An OAuth2 refresh grant the endpoint does not take is a 400 (invalid_grant), not a 401.
        refused = (400, 401, 403) if creds and creds.identity_token else (401, 403)
        return _read_token(response, host, repository, refused)

    def refused(self, host: str, repository: str, status: int) -> ProxyError:
        """The error of a registry that still answers 401/403 with the header a challenge gave."""
        configured = self.credentials_for(host) is not None
        why = f"refused the configured credentials (HTTP {status})" if configured else \
            f"asks for credentials (HTTP {status}) and REGISTRY_AUTH_FILE has none for it"
        return _refused(host, repository, why)


class LiveHeaders(Mapping[str, Mapping[str, str]]):
    """host -> headers for a Fetch, read when each request goes out, so a long transfer gets a fresh token
    once the first expires. Only the registry's own host gets any."""

    def __init__(self, auth: RegistryAuth, host: str, repository: str):
        self._auth, self._host, self._repository = auth, host, repository

    def __getitem__(self, host: str) -> Mapping[str, str]:
        if host != self._host:
            raise KeyError(host)
        value = self._auth.header(self._host, self._repository)
        return {"Authorization": value} if value else {}

    def __iter__(self) -> Iterator[str]:
        return iter((self._host,))

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        return f"LiveHeaders({self._host})"


def _read_token(response: requests.Response, host: str, repository: str,
                refused: tuple[int, ...]) -> tuple[str, float]:
    """The header value and expiry of a token endpoint's answer, its body read through TOKEN_MAX_BYTES.

    Raises:
        ProxyError: source_auth_failed (a status in `refused`), hub_unavailable (no token, a body too large).
    """
    status = response.status_code
    if status in refused or not response.ok:
        response.close()
        if status in refused:
            raise _refused(host, repository, f"refused the credentials at its token endpoint (HTTP {status})")
        body = None
    else:
        body = json_capped(response, TOKEN_MAX_BYTES, f"the answer of the token endpoint of {host}")
    token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise ProxyError(ErrorCode.HUB_UNAVAILABLE,
                         f"the token endpoint of {host} answered HTTP {status} without a token")
    return f"Bearer {token}", time.monotonic() + max(_ttl_s(body.get("expires_in")) - EXPIRY_MARGIN_S, 1)


def _check_realm(host: str, repository: str, realm: str) -> None:
    """A token realm gets credentials (or any request) only on the registry's own host, or over HTTPS elsewhere:
    a plain-HTTP realm on another host would receive them in the clear (and could be any internal address).

    Raises:
        ProxyError: source_auth_failed.
    """
    try:
        parts = urlsplit(realm)
        realm_host = (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
    except ValueError:
        raise _refused(host, repository, "names a token realm that is not a URL") from None
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and realm_host == host.lower():
        return
    raise _refused(host, repository, f"names a token realm on {parts.scheme or 'no'}://{realm_host or '?'}, "
                   "another host over plain HTTP (only the registry's own host, or HTTPS, gets credentials)")


def _ttl_s(value: object) -> float:
    """Seconds a token lives from its `expires_in`: the default when absent or not a number, at most a day."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return TOKEN_TTL_DEFAULT_S
    try:
        seconds = float(value)
    except (ValueError, OverflowError):
        return TOKEN_TTL_DEFAULT_S
    if not seconds > 0:  # zero, negative, NaN
        return TOKEN_TTL_DEFAULT_S
    return min(seconds, TOKEN_TTL_MAX_S)


def _refused(host: str, repository: str, why: str) -> ProxyError:
    return ProxyError(ErrorCode.SOURCE_AUTH_FAILED, f"registry {host} {why} (repository {repository}); "
                      "check REGISTRY_AUTH_FILE")
