"""Inference requests forwarded to the backend; streams pass through as the backend sends them."""
from __future__ import annotations

import json
import logging
from typing import Iterator

import requests
from flask import Blueprint, Response, request

from proxy.errors import ProxyError
from proxy.routes.body import check_json_tree
from proxy.routes.keep_alive_key import require_key_to_pin
from proxy.routes.openai_fields import check_openai_fields
from proxy.pulls.pulled_names import backend_model_id
from proxy.services import services
from proxy.backend.upstream import ClientLeft, broken_answer, open_upstream
from core.errors import openai_error_body

log = logging.getLogger(__name__)
bp = Blueprint("forward", __name__)
ROUTES = {
    "/v1/generate": "/api/generate",
    "/v1/completions": "/v1/completions",
    "/v1/chat/completions": "/v1/chat/completions",
}
PASSED_HEADERS = ("Content-Type", "Cache-Control", "Retry-After")  # Retry-After: a full queue's 503
CLIENT_CLOSED = 499  # nginx's status for a client that hung up first; only the access log sees it


def _forward(backend_path: str) -> Response:
    """Raises: ProxyError server_busy, backend_unavailable, backend_timeout."""
    body, files = _with_model_id(request.get_data(cache=False))
    try:
        upstream = open_upstream(backend_path, body, files, content_type=request.content_type or "application/json")
    except ClientLeft:
        return Response(status=CLIENT_CLOSED)
    try:
        response = _relay(upstream.response)
    except BaseException:
        upstream.close()
        raise
    response.call_on_close(upstream.close)  # when the last byte went out or the client left
    return response


def _relay(answer: requests.Response) -> Response:
    """The backend's answer as it came: a plain one read at once, a stream relayed event by event."""
    headers = {name: answer.headers[name] for name in PASSED_HEADERS if name in answer.headers}
    if not answer.headers.get("Content-Type", "").startswith("text/event-stream"):
        return Response(_read_body(answer), status=answer.status_code, headers=headers)  # one read, one write
    headers["X-Accel-Buffering"] = "no"
    return Response(_relay_events(answer), status=answer.status_code, headers=headers)


def _with_model_id(body: bytes) -> tuple[bytes, list[str]]:
    """The body with a `model` named as pulled (`owner/name:QUANT`, ...) replaced by the model id the backend
    knows; any other body as it came, byte for byte (the backend judges what it cannot parse). And the
    installed files the model names (none when the body names no installed model).

    Raises: ProxyError model_not_found; invalid_request for an OpenAI field the backend does not implement.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to be a request
        return body, []
    check_json_tree(parsed, body)
    require_key_to_pin(parsed)
    check_openai_fields(request.path, parsed)
    name = parsed.get("model") if isinstance(parsed, dict) else None
    if not isinstance(name, str) or not name:
        return body, []
    store = services().store
    model_id = backend_model_id(store, name)
    if model_id == name:
        return body, store.files_of_model(name)
    parsed["model"] = model_id
    return json.dumps(parsed, ensure_ascii=False).encode(), store.files_of_model(model_id)


def _relay_events(upstream: requests.Response) -> Iterator[bytes]:
    """The backend's SSE bytes as they arrive; if the backend fails mid-stream, a last event saying so."""
    tail = b"\n\n"
    try:
        # chunk_size=None hands on each piece as soon as it arrives: no buffering of tokens.
        for chunk in upstream.iter_content(chunk_size=None):
            tail = (tail + chunk)[-2:]
            yield chunk
    except requests.RequestException as err:
        error = broken_answer(err)
        log.warning("backend stream of %s broke off: %s (%s)", upstream.url, error.code, type(err).__name__)
        # End a half-sent event first, so that the error is an event of its own.
        yield (b"" if tail == b"\n\n" else b"\n\n") + _error_event(error)
    finally:
        upstream.close()


def _error_event(error: ProxyError) -> bytes:
    """An SSE event in OpenAI's error shape, which SDKs raise with its message."""
    return f"data: {json.dumps(openai_error_body(error.code, error.message, error.status))}\n\n".encode()


def _read_body(upstream: requests.Response) -> bytes:
    """Raises: ProxyError backend_timeout, backend_unavailable (the backend failed mid-body)."""
    try:
        return upstream.content
    except requests.RequestException as err:
        raise broken_answer(err) from err


for _path, _backend_path in ROUTES.items():
    bp.add_url_rule(_path, endpoint=_path.strip("/").replace("/", "_"),
                    view_func=lambda backend_path=_backend_path: _forward(backend_path), methods=["POST"])
