"""OpenAI's Responses API: POST /v1/responses (streamed as OpenAI streams it), translated to the backend's chat
(proxy/responses/); errors are OpenAI's shape with `param` naming the field at fault (the app's handler)."""
from __future__ import annotations

import json
import logging
from typing import Iterator

from flask import Blueprint, Response, jsonify

from proxy.backend.chat import start_chat
from proxy.backend.upstream import Upstream
from proxy.errors import ProxyError
from proxy.responses.answer import ResponseTranslator
from proxy.responses.request import responses_request
from proxy.routes.body import json_body

log = logging.getLogger(__name__)
bp = Blueprint("responses", __name__)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@bp.post("/v1/responses")
def create():
    asked = responses_request(json_body())
    upstream = start_chat(asked.body, asked.files)
    translator = ResponseTranslator(asked)
    if not asked.stream:
        for _ in translator.events(upstream):
            pass
        return jsonify(translator.response())
    response = Response(_sse(translator, upstream), mimetype="text/event-stream", headers=SSE_HEADERS)
    response.call_on_close(upstream.close)
    return response


def _sse(translator: ResponseTranslator, upstream: Upstream) -> Iterator[str]:
    """OpenAI's SSE framing (`event:` and `data:`); a failure part way is a last `error` event."""
    try:
        for event in translator.events(upstream):
            yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
    except ProxyError as err:
        log.warning("backend stream for %s broke off: %s", translator.asked.model, err.code)
        error = {"type": "error", "code": err.code, "message": err.message, "param": None,
                 "sequence_number": translator.next_sequence()}
        yield f"event: error\ndata: {json.dumps(error)}\n\n"
