"""Anthropic's Messages API: POST /v1/messages (streamed as Anthropic streams) and /v1/messages/count_tokens,
translated to the backend's chat (proxy/anthropic/); errors are Anthropic's shape (core.errors, for every path
under /v1/messages)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from core.errors import anthropic_error_body
from proxy.anthropic.answer import MessageTranslator
from proxy.anthropic.count import count_input_tokens
from proxy.anthropic.request import messages_request
from proxy.backend.chat import start_chat
from proxy.routes.body import json_body
from proxy.routes.sse import translated_answer

bp = Blueprint("anthropic", __name__)


@bp.post("/v1/messages")
def messages():
    asked = messages_request(json_body())
    upstream, translator = start_chat(asked.body, asked.files), MessageTranslator(asked)
    return translated_answer(upstream, translator.events(upstream), translator.message, asked.stream,
                             lambda err: anthropic_error_body(err.message, err.status))


@bp.post("/v1/messages/count_tokens")
def count_tokens():
    return jsonify(input_tokens=count_input_tokens(messages_request(json_body(), counting=True)))
