"""The OpenAPI paths and schemas of the agents' dialects: Anthropic's Messages (POST /v1/messages,
/v1/messages/count_tokens) and OpenAI's Responses (POST /v1/responses); proxy/openapi/document.py merges them."""
from __future__ import annotations

from proxy.openapi.primitives import JSON, SSE, OBJ, STR, INT, BOOL, NUMBER, NULLABLE_STR, json_content, ref

STATUSES = (400, 404, 405, 413, 422, 500, 502, 503, 504, 507)
TEXT_OR_LIST = {"oneOf": [STR, {"type": "array", "items": OBJ}]}


def _op(summary: str, ok: dict, body: str, error: str) -> dict:
    errors = {str(s): json_content(ref(error), "error") for s in STATUSES}
    return {"post": {"summary": summary, "responses": {"200": ok, **errors},
                     "requestBody": {"required": True, "content": {JSON: {"schema": ref(body)}}}}}


def _streamed(schema: str, description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": ref(schema)}, SSE: {"schema": STR}}}


def paths() -> dict:
    counted = json_content({"type": "object", "required": ["input_tokens"], "properties": {"input_tokens": INT}})
    return {
        "/v1/messages": _op("Anthropic's Messages API, translated to the backend's chat; with stream: true "
                            "Anthropic's SSE events", _streamed("AnthropicMessage", "the message, or its events"),
                            "MessagesRequest", "AnthropicError"),
        "/v1/messages/count_tokens": _op("The input tokens a Messages request would use", counted,
                                         "MessagesCountRequest", "AnthropicError"),
        "/v1/responses": _op("OpenAI's Responses API, stateless, translated to the backend's chat; with "
                             "stream: true OpenAI's SSE events", _streamed("Response", "the response, or its events"),
                             "ResponsesRequest", "OpenAIError"),
    }


def schemas() -> dict:
    messages = {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["role", "content"],
                                                          "properties": {"role": {"enum": ["user", "assistant"]},
                                                                         "content": TEXT_OR_LIST}}}
    counted = {"model": STR, "messages": messages, "system": TEXT_OR_LIST, "tools": {"type": "array", "items": OBJ},
               "tool_choice": OBJ, "thinking": OBJ}
    return {
        "AnthropicError": {"type": "object", "required": ["type", "error"], "properties": {
            "type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"],
                                                  "properties": {"type": STR, "message": STR}}}},
        "MessagesCountRequest": {"type": "object", "required": ["model", "messages"], "properties": counted},
        "MessagesRequest": {"type": "object", "required": ["model", "messages", "max_tokens"], "properties": {
            **counted, "max_tokens": {**INT, "minimum": 1}, "stop_sequences": {"type": "array", "items": STR},
            "temperature": NUMBER, "top_p": NUMBER, "top_k": INT, "stream": BOOL, "output_config": OBJ,
            "metadata": OBJ}},
        "AnthropicMessage": {"type": "object", "required": ["id", "type", "role", "model", "content", "stop_reason",
                                                            "usage"], "properties": {
            "id": STR, "type": {"const": "message"}, "role": {"const": "assistant"}, "model": STR,
            "content": {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {
                "type": {"enum": ["text", "thinking", "tool_use"]}, "text": STR, "thinking": STR, "id": STR,
                "name": STR, "input": OBJ}}},
            "stop_reason": {"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use"]},
            "stop_sequence": NULLABLE_STR,
            "usage": {"type": "object", "required": ["input_tokens", "output_tokens"],
                      "properties": {"input_tokens": INT, "output_tokens": INT}}}},
        "ResponsesRequest": {"type": "object", "required": ["model", "input"], "properties": {
            "model": STR, "input": TEXT_OR_LIST, "instructions": STR, "max_output_tokens": {**INT, "minimum": 1},
            "temperature": NUMBER, "top_p": NUMBER, "tools": {"type": "array", "items": OBJ},
            "tool_choice": {"oneOf": [STR, OBJ]}, "parallel_tool_calls": BOOL, "text": OBJ, "reasoning": OBJ,
            "stream": BOOL, "metadata": OBJ,
            "store": {**BOOL, "description": "true is refused: no responses are stored"},
            "previous_response_id": {**NULLABLE_STR, "description": "refused: no responses are stored"}}},
        "Response": {"type": "object", "required": ["id", "object", "created_at", "status", "model", "output"],
                     "properties": {
            "id": STR, "object": {"const": "response"}, "created_at": INT,
            "status": {"enum": ["completed", "incomplete"]}, "model": STR,
            "output": {"type": "array", "items": {"type": "object", "required": ["type", "id"], "properties": {
                "type": {"enum": ["message", "function_call", "reasoning"]}, "id": STR, "content": {
                    "type": "array", "items": OBJ}, "call_id": STR, "name": STR, "arguments": STR}}},
            "incomplete_details": {"type": ["object", "null"]},
            "usage": {"type": "object", "required": ["input_tokens", "output_tokens", "total_tokens"],
                      "properties": {"input_tokens": INT, "output_tokens": INT, "total_tokens": INT}}}},
    }
