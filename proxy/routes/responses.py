"""OpenAI's Responses API: POST /v1/responses (streamed as OpenAI streams it), translated to the backend's chat
(proxy/responses/); errors are OpenAI's shape with `param` naming the field at fault (the app's handler)."""
from __future__ import annotations

from flask import Blueprint

from proxy.backend.chat import start_chat
from proxy.responses.answer import ResponseTranslator
from proxy.responses.request import responses_request
from proxy.routes.body import json_body
from proxy.routes.sse import translated_answer

bp = Blueprint("responses", __name__)


@bp.post("/v1/responses")
def create():
    asked = responses_request(json_body())
    upstream, translator = start_chat(asked.body, asked.files), ResponseTranslator(asked)
    return translated_answer(upstream, translator.events(upstream), translator.response, asked.stream,
                             translator.error_event)
