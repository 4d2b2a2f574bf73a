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
from proxy.errors import ErrorCode, ProxyError, STATUS_BY_CODE
from proxy.services import services

log = logging.getLogger(__name__)
ERROR_BODY_MAX = 64 * 1024  # an error answer larger than this is not the backend's JSON error
RETRY_AFTER_S = 1
# A backend error answer without a code we know stands for the code of its status.
_CODE_BY_STATUS = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.BODY_TOO_LARGE,
                   502: ErrorCode.BACKEND_UNAVAILABLE, 503: ErrorCode.SERVER_BUSY, 504: ErrorCode.BACKEND_TIMEOUT}
# How long the proxy waits for the answer (or a stream's first event): the backend stops generating
# after that, as nobody waits any more (server.engine.waiting).


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


def backend_error(response: requests.Response) -> ProxyError:
    """The backend's error answer as our error, in either of its shapes (docs/api.md's or OpenAI's), with its status
    and Retry-After; a code we do not know becomes the one its status stands for."""
    try:
        raw = response.raw.read(ERROR_BODY_MAX, decode_content=True)
        body = json.loads(raw)
    except (ValueError, requests.RequestException, OSError, AttributeError):
        body = None
    inner = body.get("error") if isinstance(body, dict) else None
    if isinstance(inner, dict):  # OpenAI's shape
        message, code = inner.get("message"), inner.get("code")
    else:
        message, code = inner, body.get("code") if isinstance(body, dict) else None
    status = response.status_code
    if not isinstance(code, str) or code not in STATUS_BY_CODE:  # a list or an object is no code either
        code = _CODE_BY_STATUS.get(status, ErrorCode.INVALID_REQUEST if status < 500 else ErrorCode.BACKEND_UNAVAILABLE)
    if not isinstance(message, str) or not message:
        message = f"the backend answered HTTP {status} ({code})"
    headers = {"Retry-After": response.headers["Retry-After"]} if "Retry-After" in response.headers else None
    return ProxyError(code, message, status=status, headers=headers)
