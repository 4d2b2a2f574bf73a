"""The OpenAPI paths and schemas of llama-server's endpoints on the proxy and of GET /v1/models/{name}
(proxy/openapi/document.py merges them into the one document)."""
from __future__ import annotations

from proxy.openapi.primitives import JSON, OBJ, STR, INT, BOOL, json_content, ref

STATUSES = (400, 404, 405, 413, 422, 500, 502, 503, 504, 507)
MODEL = {**STR, "description": "the model (llama-server serves one; without it: the one loaded, else the one "
                               "installed, else 400 listing them)"}
MODEL_QUERY = {"name": "model", "in": "query", "required": False, "schema": MODEL}


def _op(summary: str, ok: dict, body: dict | None = None, params: list | None = None) -> dict:
    errors = {str(s): json_content(ref("LlamaServerError"), "error") for s in STATUSES}
    op = {"summary": summary, "responses": {"200": ok, **errors}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _body(required: list[str], **properties: dict) -> dict:
    return {"type": "object", "required": required, "properties": {"model": MODEL, **properties}}


def schemas() -> dict:
    completion = {"type": "object", "required": ["content", "stop"], "properties": {
        "content": STR, "stop": BOOL, "model": STR, "tokens_predicted": INT, "tokens_evaluated": INT,
        "tokens_cached": INT, "prompt": STR, "stop_type": {"enum": ["eos", "limit", "word"]}, "stopping_word": STR,
        "truncated": BOOL, "generation_settings": OBJ, "timings": OBJ}}
    return {
        "LlamaServerError": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message", "type"],
            "properties": {"code": {**INT, "description": "the HTTP status"}, "message": STR, "type": STR}}}},
        "LlamaServerCompletion": completion,
        "OpenAIModel": {"type": "object", "required": ["id", "object", "owned_by"], "properties": {
            "id": STR, "object": {"const": "model"}, "created": INT, "owned_by": STR}},
    }


def paths() -> dict:
    streamed = {"description": "the answer, or with stream:true `data: {...}` events (the last has stop:true)",
                "content": {JSON: {"schema": ref("LlamaServerCompletion")}, "text/event-stream": {"schema": STR}}}
    tokens = {"type": "array", "items": {"oneOf": [INT, {"type": "object", "required": ["id", "piece"]}]}}
    prompt = {"oneOf": [STR, {"type": "array"}], "description": "text, token ids, or both mixed"}
    extra = {"type": "array", "items": {"type": "object", "properties": {"filename": STR, "text": STR}}}
    return {
        "/health": {"get": _op("llama-server's probe: ok while the backend answers", json_content(
            {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}))},
        "/props": {"get": _op("llama-server's properties of the model", json_content(OBJ), params=[MODEL_QUERY])},
        "/slots": {"get": _op("llama-server's slots of the model ([] while it is not loaded)", json_content(
            {"type": "array", "items": OBJ}), params=[MODEL_QUERY, {
                "name": "fail_on_no_slot", "in": "query", "required": False, "schema": STR}])},
        "/tokenize": {"post": _op("Tokens of a text", json_content({"type": "object", "required": ["tokens"],
                                                              "properties": {"tokens": tokens}}),
                                  _body(["content"], content=STR, add_special=BOOL, parse_special=BOOL,
                                        with_pieces=BOOL))},
        "/detokenize": {"post": _op("The text of tokens", json_content({"type": "object", "required": ["content"],
                                                                  "properties": {"content": STR}}),
                                    _body(["tokens"], tokens={"type": "array", "items": INT}))},
        "/apply-template": {"post": _op("Chat messages rendered by the model's template", json_content(
            {"type": "object", "required": ["prompt"], "properties": {"prompt": STR}}),
            _body(["messages"], messages={"type": "array", "items": OBJ}))},
        "/completion": {"post": _op("llama-server's native completion", streamed,
                                    _body([], prompt=prompt, n_predict=INT, stream=BOOL))},
        "/infill": {"post": _op("Fill in the middle (a model with FIM tokens)", streamed, _body(
            [], input_prefix=STR, input_suffix=STR, input_extra=extra, prompt=STR, n_predict=INT, stream=BOOL))},
        "/v1/models/{name}": {"get": {"summary": "One model in OpenAI's shape (models.retrieve)", "responses": {
            "200": json_content(ref("OpenAIModel")),
            **{str(s): json_content(ref("OpenAIError"), "error") for s in (404, 405, 413, 500)}},
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": STR}]}},
    }
