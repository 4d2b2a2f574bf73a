"""Anthropic's Messages API: POST /v1/messages (streamed as Anthropic streams) and /v1/messages/count_tokens,
translated to the backend's chat (proxy/anthropic/); errors are Anthropic's shape (core.errors, for every path
under /v1/messages)."""
from __future__ import annotations

import json
import logging
from typing import Iterator

from flask import Blueprint, Response, jsonify

from proxy.anthropic.answer import MessageTranslator
from proxy.anthropic.count import count_input_tokens
from proxy.anthropic.request import messages_request
from proxy.backend.chat import start_chat
from proxy.backend.upstream import Upstream
from core.errors import anthropic_error_body
from proxy.errors import ProxyError
from proxy.routes.body import json_body

log = logging.getLogger(__name__)
bp = Blueprint("anthropic", __name__)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@bp.post("/v1/messages")
def messages():
    asked = messages_request(json_body())
    upstream = start_chat(asked.body, asked.files)
    translator = MessageTranslator(asked)
    if not asked.stream:
        for _ in translator.events(upstream):
            pass
        return jsonify(translator.message())
    response = Response(_sse(translator, upstream), mimetype="text/event-stream", headers=SSE_HEADERS)
    response.call_on_close(upstream.close)
    return response


@bp.post("/v1/messages/count_tokens")
def count_tokens():
    return jsonify(input_tokens=count_input_tokens(messages_request(json_body(), counting=True)))


def _sse(translator: MessageTranslator, upstream: Upstream) -> Iterator[str]:
    """Anthropic's SSE framing, `event: <type>` then its data; a failure part way is a last `error` event."""
    try:
        for event in translator.events(upstream):
            yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
    except ProxyError as err:
        log.warning("backend stream for %s broke off: %s", translator.asked.model, err.code)
        yield f"event: error\ndata: {json.dumps(anthropic_error_body(err.message, err.status))}\n\n"
