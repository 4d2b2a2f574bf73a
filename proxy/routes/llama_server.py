"""llama-server's own endpoints, in its shapes, forwarded to the backend's of the same paths with the model named
(proxy/llama_server/choice.py), so tools written against llama-server (llama.vim, llama.vscode, scripts probing
/health) work against the proxy; /completion and /infill stream as llama-server streams (docs/api.md,
llama-server's endpoints)."""
from __future__ import annotations

import json
import logging
from typing import Iterator
from urllib.parse import urlencode

import requests
from flask import Blueprint, Response, jsonify, request

from proxy.backend.upstream import Upstream, broken_answer, call_backend
from proxy.errors import ErrorCode, ProxyError
from proxy.llama_server.choice import chosen_model
from proxy.llama_server.errors import llama_error_body, register_llama_errors
from proxy.routes.body import json_body
from proxy.routes.keep_alive_key import require_key_to_pin
from proxy.services import services

log = logging.getLogger(__name__)
bp = Blueprint("llama_server", __name__)
register_llama_errors(bp)
POSTED = ("/tokenize", "/detokenize", "/apply-template", "/completion", "/infill")


@bp.get("/health")
def health():
    """llama-server's probe: 200 `{"status": "ok"}` while the backend answers, else 503 in its error shape."""
    if services().backend.health() is None:
        down = services().backend.unavailable("the backend does not answer its /health", wait=False)
        return jsonify(llama_error_body(503, down.message)), 503
    return jsonify(status="ok")


@bp.get("/props")
def props():
    return _get("/props")


@bp.get("/slots")
def slots():
    return _get("/slots")


def _get(path: str) -> Response:
    model, files = chosen_model(request.args.get("model"))
    query = {**request.args.to_dict(), "model": model}
    return _answer(call_backend(f"{path}?{urlencode(query)}", None, files, method="GET"))


def _post(path: str) -> Response:
    """Raises: ProxyError invalid_request (no JSON object), model_not_found, auth_required, the backend's."""
    body = json_body()
    if not isinstance(body, dict):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "the body must be a JSON object")
    require_key_to_pin(body)
    body["model"], files = chosen_model(body.get("model"))
    return _answer(call_backend(path, body, files))


def _answer(upstream: Upstream) -> Response:
    """The backend's answer as it came: an SSE stream relayed as it arrives, else its JSON."""
    content_type = upstream.response.headers.get("Content-Type", "application/json")
    if not content_type.startswith("text/event-stream"):
        try:
            return Response(upstream.response.content, status=upstream.response.status_code,
                            content_type=content_type)
        except requests.RequestException as err:
            raise broken_answer(err) from err
        finally:
            upstream.close()
    response = Response(_relay(upstream), content_type=content_type,
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    response.call_on_close(upstream.close)
    return response


def _relay(upstream: Upstream) -> Iterator[bytes]:
    """The stream's bytes as they arrive; if the backend fails part way, a last `error:` event, as llama-server
    ends a stream that failed."""
    try:
        yield from upstream.response.iter_content(chunk_size=None)
    except requests.RequestException as err:
        error = broken_answer(err)
        log.warning("backend stream of %s broke off: %s", upstream.response.url, error.code)
        yield f"\n\nerror: {json.dumps(llama_error_body(error.status, error.message))}\n\n".encode()
    finally:
        upstream.close()


for _path in POSTED:
    bp.add_url_rule(_path, endpoint=_path.strip("/").replace("-", "_"),
                    view_func=lambda path=_path: _post(path), methods=["POST"])
