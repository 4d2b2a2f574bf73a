"""The inference server the proxy fronts: forwarding with streaming, timeouts and error mapping."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import requests

from proxy.errors import ErrorCode, ProxyError
from core.hangup import ClientWatch, WatchedAdapter
from core.wire import SMOKE_TEST_HEADER

log = logging.getLogger(__name__)
HEALTH_TIMEOUT_S = 2.0
SMOKE_PROMPT = "Hello"
EXIT_FILE_WAIT_S = 0.3


class BackendClient:
    def __init__(self, base_url: str, timeout_s: float = 300.0, connect_timeout_s: float = 5.0,
                 observe: Callable[[str, float], None] = lambda path, seconds: None,
                 exit_file: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.exit_file = exit_file  # where the start script leaves why the backend process died
        self._observe = observe
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._session = requests.Session()
        # The backend is local: HTTP(S)_PROXY and .netrc from the environment must not apply to it.
        self._session.trust_env = False
        # Forwarding shuts a backend connection down when its client hangs up (core.hangup).
        self._session.mount("http://", WatchedAdapter())
        self._session.mount("https://", WatchedAdapter())

    def request(self, method: str, path: str, *, body: bytes | None = None, content_type: str | None = None,
                stream: bool = False, timeout_s: float | None = None, probe: bool = False,
                headers: dict[str, str] | None = None) -> requests.Response:
        """Send one request to the backend; the caller closes a streamed response. A `probe` (health,
        listing), or a request whose client hung up, never waits for the start script's word on why the
        backend died.

        Raises:
            ProxyError: backend_unavailable (refused, reset), backend_timeout (no answer in time).
        """
        headers = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
        timeout = (self.connect_timeout_s, timeout_s or self.timeout_s)
        started = time.monotonic()
        try:
            response = self._session.request(method, self.base_url + path, data=body, headers=headers,
                                             stream=stream, timeout=timeout)
            self._observe(path, time.monotonic() - started)
            return response
        except requests.ConnectTimeout as err:
            raise self.unavailable("the backend did not accept a connection", wait=not probe) from err
        except requests.Timeout as err:
            raise ProxyError(ErrorCode.BACKEND_TIMEOUT, "the backend took too long to answer") from err
        except requests.RequestException as err:
            raise self.unavailable("the backend is not reachable", wait=not (probe or _client_left())) from err

    def unavailable(self, message: str, wait: bool = True) -> ProxyError:
        """A backend_unavailable error, saying why the backend process died when its start script told us.

        The script writes the reason the moment it reaps the process, which can be just after the request
        that found the connection reset: with `wait`, a missing reason is looked for once more.
        """
        reason = self._exit_reason()
        if reason is None and wait and self.exit_file:
            time.sleep(EXIT_FILE_WAIT_S)
            reason = self._exit_reason()
        return ProxyError(ErrorCode.BACKEND_UNAVAILABLE, f"{message}: {reason}" if reason else message)

    def _exit_reason(self) -> str | None:
        if not self.exit_file:
            return None
        try:
            return Path(self.exit_file).read_text().strip()[:500] or None
        except OSError:
            return None

    def health(self) -> dict | None:
        """The backend's /health JSON, or None when it does not answer 200."""
        try:
            response = self.request("GET", "/health", timeout_s=HEALTH_TIMEOUT_S, probe=True)
            return response.json() if response.status_code == 200 else None
        except (ProxyError, ValueError):
            return None

    def model_ids(self) -> list[dict]:
        """The backend's OpenAI model list entries; [] when it does not answer."""
        try:
            response = self.request("GET", "/v1/models", timeout_s=HEALTH_TIMEOUT_S * 5, probe=True)
            data = response.json().get("data", []) if response.status_code == 200 else []
            return [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
        except (ProxyError, ValueError, AttributeError):
            return []

    def model_info(self, model_id: str) -> dict | None:
        """The backend's `POST /api/info` for a model (its chat template, stop strings, sampling defaults and
        contexts), or None when it answers otherwise (a llama-server or Shimmy has no such endpoint)."""
        body = json.dumps({"model": model_id}).encode()
        try:
            response = self.request("POST", "/api/info", body=body, content_type="application/json",
                                    timeout_s=HEALTH_TIMEOUT_S * 10, probe=True)
            info = response.json() if response.status_code == 200 else None
        except (ProxyError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def smoke_test(self, model_id: str) -> None:
        """Load the model and generate one token, leaving the models the backend had loaded in memory.

        Raises:
            ProxyError: smoke_test_failed when the backend answered but could not load or generate;
                backend_unavailable or backend_timeout when it did not answer, which says nothing of the file.
        """
        body = json.dumps({"model": model_id, "prompt": SMOKE_PROMPT, "max_tokens": 1, "stream": False})
        # The header asks our backend to leave its loaded models as they were (server.api.routes says how).
        response = self.request("POST", "/api/generate", body=body.encode(), content_type="application/json",
                                headers={SMOKE_TEST_HEADER: "1"})
        if response.status_code != 200:
            raise ProxyError(ErrorCode.SMOKE_TEST_FAILED, f"the backend could not load {model_id} "
                             f"(HTTP {response.status_code}, {_error_code(response)})")
        log.info("smoke test of %s passed", model_id)


def _client_left() -> bool:
    watch = ClientWatch.current()
    return bool(watch and watch.client_left)


def _error_code(response: requests.Response) -> str:
    try:
        return str(response.json().get("code", "no code"))
    except (ValueError, AttributeError):
        return "no JSON body"
