"""Every request the proxy forwards to the backend, whether its answer is passed on as it is (proxy/routes/forward.py)
or reshaped (Ollama's API, the agents' dialects, llama-server's endpoints, residency): one of
FORWARD_MAX_IN_FLIGHT slots, the models it names held in flight and marked used, a client that hangs up before the
backend answers closes the backend request, and all of it released when the answer has been read."""
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


class ClientLeft(ProxyError):
    """The client hung up before the backend answered; the backend request was closed (nobody reads an answer)."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.BACKEND_UNAVAILABLE, "the client left before the backend answered")


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


def open_upstream(path: str, data: bytes | None, files: list[str], method: str = "POST",
                  timeout_s: float | None = None, content_type: str = "application/json") -> Upstream:
    """Send `data` to the backend as one forwarded request, whatever it answers; `files` are the installed files
    it uses. Closing the Upstream releases the slot and the files.

    Raises:
        ClientLeft: the client hung up before the backend answered.
        ProxyError: server_busy (FORWARD_MAX_IN_FLIGHT), backend_unavailable, backend_timeout.
    """
    releases = [forward_slot()]
    try:
        releases.append(use_files(files))
        return Upstream(_send(method, path, data, timeout_s, content_type), releases)
    except BaseException:
        release_all(releases)
        raise


def call_backend(path: str, body: dict | None, files: list[str], method: str = "POST",
                 timeout_s: float | None = None) -> Upstream:
    """Send `body` (JSON) to the backend as one forwarded request, its error answers raised as ours.

    Raises:
        ProxyError: server_busy (FORWARD_MAX_IN_FLIGHT), backend_unavailable, backend_timeout, and the
            backend's own error when it answers one (with its status).
    """
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
    upstream = open_upstream(path, data, files, method, timeout_s)
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


def _send(method: str, path: str, data: bytes | None, timeout_s: float | None,
          content_type: str) -> requests.Response:
    """Until the backend's answer (or a stream's first event) is here, a client that hangs up closes the backend
    connection: the backend stops generating. A stream's later hang-up is seen on writing.

    Raises:
        ClientLeft, ProxyError backend_unavailable, backend_timeout.
    """
    backend = services().backend
    with ClientWatch(request.environ.get("gunicorn.socket")) as watch:
        try:
            # Connection: close, so no other request can reuse a socket the watch holds.
            return backend.request(method, path, body=data, stream=True, content_type=content_type,
                                   timeout_s=timeout_s, headers={TIMEOUT_HEADER: f"{backend.timeout_s:g}",
                                                                 "Connection": "close"})
        except ProxyError:
            if watch.client_left:
                log.info("client left before the backend answered %s; backend request closed", path)
                raise ClientLeft() from None
            raise
