"""Inference requests forwarded to the backend; streams pass through as the backend sends them."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request

bp = Blueprint("forward", __name__)
ROUTES = {
    "/v1/generate": "/api/generate",
    "/v1/completions": "/v1/completions",
    "/v1/chat/completions": "/v1/chat/completions",
}
PASSED_HEADERS = ("Content-Type", "Cache-Control")


def _forward(backend_path: str):
    backend = current_app.extensions["backend"]
    upstream = backend.request("POST", backend_path, body=request.get_data(cache=False),
                               content_type=request.content_type or "application/json", stream=True)
    headers = {name: upstream.headers[name] for name in PASSED_HEADERS if name in upstream.headers}
    if upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
        headers["X-Accel-Buffering"] = "no"

    def relay():
        try:
            # chunk_size=None hands on each piece as soon as it arrives: no buffering of tokens.
            yield from upstream.iter_content(chunk_size=None)
        finally:
            upstream.close()

    return Response(relay(), status=upstream.status_code, headers=headers)


for _path, _backend_path in ROUTES.items():
    bp.add_url_rule(_path, endpoint=_path.strip("/").replace("/", "_"),
                    view_func=lambda backend_path=_backend_path: _forward(backend_path), methods=["POST"])
