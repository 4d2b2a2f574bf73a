"""Backend calls for routes that translate (Ollama's API, residency): the forwarding rules of
proxy/routes/forward.py (FORWARD_MAX_IN_FLIGHT, models held in flight and marked used, a client that hangs up
closes the backend request), with the backend's answer handed back to the caller to reshape."""
from __future__ import annotations

import json
import logging
from typing import Callable, Iterator

import requests
from flask import request
from urllib3.exceptions import ReadTimeoutError

from core.hangup import ClientWatch
from core.wire import TIMEOUT_HEADER
from proxy.backend.errors import backend_error
from proxy.errors import ErrorCode, ProxyError
from proxy.services import services

log = logging.getLogger(__name__)
RETRY_AFTER_S = 1


class Upstream:
    """One backend answer being read, and what to release when it has been (a slot, the model's hold)."""

    def __init__(self, response: requests.Response, releases: list[Callable[[], None]]):
        self.response = response
        self._releases = releases

    def close(self) -> None:
        self.response.close()
        while self._releases:
            self._releases.pop()()

    def json(self) -> dict:
        """The whole answer as a JSON object, then closed.

        Raises:
            ProxyError: backend_timeout, backend_unavailable (cut off, or not JSON).
        """
        try:
            body = self.response.json()
        except requests.RequestException as err:
            raise broken_answer(err) from err
        except ValueError as err:
            raise ProxyError(ErrorCode.BACKEND_UNAVAILABLE, "the backend answered what is not JSON") from err
        finally:
            self.close()
        if not isinstance(body, dict):
            raise ProxyError(ErrorCode.BACKEND_UNAVAILABLE, "the backend answered what is not a JSON object")
        return body

    def sse_data(self) -> Iterator[str]:
        """The `data:` of each SSE event as it arrives (multi-line data joined with newlines), closed at the end.

        Raises:
            ProxyError: backend_timeout, backend_unavailable (the stream broke off).
        """
        buffer = ""
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                buffer += chunk.decode("utf-8", errors="replace").replace("\r\n", "\n")
                *events, buffer = buffer.split("\n\n")
                for event in events:
                    data = [line[5:].removeprefix(" ") for line in event.split("\n") if line.startswith("data:")]
                    if data:
                        yield "\n".join(data)
        except requests.RequestException as err:
            raise broken_answer(err) from err
        finally:
            self.close()


def call_backend(path: str, body: dict, files: list[str], method: str = "POST",
                 timeout_s: float | None = None) -> Upstream:
    """Send `body` to the backend as one forwarded request; `files` are the installed files it uses.

    Raises:
        ProxyError: server_busy (FORWARD_MAX_IN_FLIGHT), backend_unavailable, backend_timeout, and the
            backend's own error when it answers one (with its status).
    """
    releases = [forward_slot()]
    try:
        releases.append(use_files(files))
        upstream = Upstream(_send(method, path, body, timeout_s), releases)
    except BaseException:
        release_all(releases)
        raise
    if upstream.response.status_code >= 400:
        with_error = backend_error(upstream.response)
        upstream.close()
        raise with_error
    return upstream


def forward_slot() -> Callable[[], None]:
    """One of FORWARD_MAX_IN_FLIGHT slots, and how to give it back.

    Raises:
        ProxyError: server_busy, at once: a request waiting for a slot would hold a thread just the same.
    """
    slots = services().forward_slots
    if not slots.acquire(blocking=False):
        limit = services().settings.forward_max_in_flight
        raise ProxyError(ErrorCode.SERVER_BUSY, f"{limit} requests are being forwarded to the backend already "
                         "(FORWARD_MAX_IN_FLIGHT); try again in a moment", headers={"Retry-After": str(RETRY_AFTER_S)})
    return slots.release


def use_files(files: list[str]) -> Callable[[], None]:
    """Mark `files` used, and in flight until the returned release: eviction leaves them alone
    (proxy/models_dir/retention.py)."""
    release = services().in_flight.hold(files)
    services().usage.touch(files)
    return release


def release_all(releases: list[Callable[[], None]]) -> None:
    for release in reversed(releases):
        release()


def broken_answer(err: requests.RequestException) -> ProxyError:
    """Our error for a backend answer that stopped part way: too slow, or cut off."""
    # requests reports a read timeout in the body as a ConnectionError wrapping urllib3's error.
    if isinstance(err, requests.Timeout) or (err.args and isinstance(err.args[0], ReadTimeoutError)):
        return ProxyError(ErrorCode.BACKEND_TIMEOUT, "the backend took too long to send the rest of its answer")
    return ProxyError(ErrorCode.BACKEND_UNAVAILABLE, "the backend closed the connection mid-answer; it may have "
                      "stopped or been restarted")


def _send(method: str, path: str, body: dict | None, timeout_s: float | None) -> requests.Response:
    backend = services().backend
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    with ClientWatch(request.environ.get("gunicorn.socket")):
        # Connection: close, so no other request reuses a socket the watch holds (as forward.py does).
        return backend.request(method, path, body=data, stream=True, content_type="application/json",
                               timeout_s=timeout_s, headers={TIMEOUT_HEADER: f"{backend.timeout_s:g}",
                                                             "Connection": "close"})
