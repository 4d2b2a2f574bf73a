"""Inference requests forwarded to the backend; streams pass through as the backend sends them."""
from __future__ import annotations

import requests
from flask import Blueprint, Response, current_app, request

from proxy.errors import ProxyError

bp = Blueprint("forward", __name__)
ROUTES = {
    "/v1/generate": "/api/generate",
    "/v1/completions": "/v1/completions",
    "/v1/chat/completions": "/v1/chat/completions",
}
PASSED_HEADERS = ("Content-Type", "Cache-Control")
RETRY_AFTER_S = 1


def _forward(backend_path: str) -> Response:
    """Raises: ProxyError server_busy, backend_unavailable, backend_timeout."""
    slots = current_app.extensions["forward_slots"]
    # Over the cap, answer at once: a request waiting for a slot would hold a thread just the same.
    if not slots.acquire(blocking=False):
        limit = current_app.extensions["settings"].forward_max_in_flight
        raise ProxyError("server_busy", f"{limit} requests are being forwarded to the backend already "
                         "(FORWARD_MAX_IN_FLIGHT); try again in a moment", headers={"Retry-After": str(RETRY_AFTER_S)})
    try:
        response = _relay(backend_path)
    except BaseException:
        slots.release()
        raise
    response.call_on_close(slots.release)  # when the last byte went out or the client went away
    return response


def _relay(backend_path: str) -> Response:
    backend = current_app.extensions["backend"]
    upstream = backend.request("POST", backend_path, body=request.get_data(cache=False),
                               content_type=request.content_type or "application/json", stream=True)
    headers = {name: upstream.headers[name] for name in PASSED_HEADERS if name in upstream.headers}
    if not upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
        with upstream:  # a plain answer: one read, one write, no chunked relay
            return Response(_read_body(upstream), status=upstream.status_code, headers=headers)
    headers["X-Accel-Buffering"] = "no"

    def relay():
        try:
            # chunk_size=None hands on each piece as soon as it arrives: no buffering of tokens.
            yield from upstream.iter_content(chunk_size=None)
        finally:
            upstream.close()

    return Response(relay(), status=upstream.status_code, headers=headers)


def _read_body(upstream) -> bytes:
    """Raises: ProxyError backend_timeout, backend_unavailable (the backend failed mid-body)."""
    try:
        return upstream.content
    except requests.Timeout as err:
        raise ProxyError("backend_timeout", "the backend took too long to answer") from err
    except requests.RequestException as err:
        raise ProxyError("backend_unavailable", "the backend closed the connection mid-answer") from err


for _path, _backend_path in ROUTES.items():
    bp.add_url_rule(_path, endpoint=_path.strip("/").replace("/", "_"),
                    view_func=lambda backend_path=_backend_path: _forward(backend_path), methods=["POST"])
