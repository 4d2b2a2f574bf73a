"""The OpenAPI paths and schemas of Ollama's API, the residency routes and OpenAI's embeddings (proxy/openapi/document.py
merges them into the one document)."""
from __future__ import annotations

from proxy.openapi.primitives import JSON, NDJSON, OBJ, STR, INT, BOOL, NULLABLE_STR, GUARDED, json_content, ref

KEEP_ALIVE = {"type": ["string", "number"], "description": 'a duration ("5m", "1h"), seconds, -1 forever, 0 at once'}
OLLAMA_STATUSES = (400, 401, 403, 404, 405, 409, 413, 422, 502, 503, 504, 507)


def _errors(schema: str, statuses: tuple[int, ...]) -> dict:
    return {str(s): json_content(ref(schema), "error") for s in sorted({*statuses, 404, 405, 413, 500})}


def _op(summary: str, ok: dict, body: dict | None = None, schema: str = "OllamaError",
        statuses: tuple[int, ...] = OLLAMA_STATUSES, ok_status: str = "200") -> dict:
    op = {"summary": summary, "responses": {ok_status: ok, **_errors(schema, statuses)}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return op


def _streamed(schema: dict, description: str) -> dict:
    """Ollama's answer: NDJSON lines when streaming (the default), one object with `stream: false`."""
    return {"description": description, "content": {NDJSON: {"schema": STR}, JSON: {"schema": schema}}}


def schemas() -> dict:
    named = {"type": "object", "required": ["model"], "properties": {"model": STR, "name": STR}}
    details = {"type": "object", "properties": {
        "parent_model": STR, "format": STR, "family": STR, "families": {"type": ["array", "null"], "items": STR},
        "parameter_size": STR, "quantization_level": STR, "context_length": INT}}
    return {
        "OllamaError": {"type": "object", "required": ["error"], "properties": {"error": STR}},
        "OllamaNamed": named,
        "OllamaDetails": details,
        "OllamaTags": {"type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": {
            "type": "object", "required": ["name", "model", "modified_at", "size", "digest", "details"],
            "properties": {"name": STR, "model": STR, "modified_at": STR, "size": INT, "digest": STR,
                           "details": ref("OllamaDetails")}}}}},
        "OllamaPs": {"type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": {
            "type": "object", "required": ["name", "model", "size", "digest", "details", "expires_at", "size_vram"],
            "properties": {"name": STR, "model": STR, "size": INT, "digest": STR, "details": ref("OllamaDetails"),
                           "expires_at": NULLABLE_STR, "size_vram": INT, "context_length": INT}}}}},
        "OllamaShow": {"type": "object", "required": ["details", "model_info"], "properties": {
            "modelfile": STR, "parameters": STR, "template": STR, "details": ref("OllamaDetails"),
            "model_info": OBJ, "capabilities": {"type": "array", "items": STR}, "modified_at": STR}},
        "OllamaProgress": {"type": "object", "properties": {"status": STR, "digest": STR, "total": INT,
                                                            "completed": INT, "error": STR}},
        "OllamaGenerateRequest": {"type": "object", "required": ["model"], "properties": {
            "model": STR, "prompt": STR, "system": STR, "raw": BOOL, "stream": BOOL, "format": {}, "options": OBJ,
            "keep_alive": KEEP_ALIVE}},
        "OllamaChatRequest": {"type": "object", "required": ["model"], "properties": {
            "model": STR, "messages": {"type": "array", "items": {
                "type": "object", "required": ["role"], "properties": {"role": STR, "content": STR,
                                                                       "tool_calls": {"type": "array", "items": OBJ},
                                                                       "tool_name": STR}}},
            "stream": BOOL, "format": {}, "options": OBJ, "keep_alive": KEEP_ALIVE,
            "tools": {"type": "array", "items": OBJ}, "think": {"type": ["boolean", "string"]}}},
        "OllamaAnswer": {"type": "object", "required": ["model", "created_at", "done"], "properties": {
            "model": STR, "created_at": STR, "response": STR, "message": OBJ, "done": BOOL, "done_reason": STR,
            "total_duration": INT, "load_duration": INT, "prompt_eval_count": INT, "prompt_eval_duration": INT,
            "eval_count": INT, "eval_duration": INT}},
        "OllamaEmbedRequest": {"type": "object", "required": ["model"], "properties": {
            "model": STR, "input": {"oneOf": [STR, {"type": "array", "items": STR}]}, "dimensions": INT,
            "keep_alive": KEEP_ALIVE}},
        "OllamaEmbed": {"type": "object", "required": ["model", "embeddings"], "properties": {
            "model": STR, "embeddings": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            "total_duration": INT, "load_duration": INT, "prompt_eval_count": INT}},
        "ResidencyRequest": {"type": "object", "required": ["model"], "properties": {
            "model": {**STR, "minLength": 1}, "keep_alive": KEEP_ALIVE}},
        "Running": {"type": "object", "required": ["models"], "properties": {"models": {"type": "array", "items": {
            "type": "object", "required": ["model", "id", "size_in_memory", "slots", "expires_at"], "properties": {
                "model": STR, "id": STR, "size_in_memory": INT, "gpu_layers": INT, "expires_at": NULLABLE_STR,
                "slots": {"type": "object", "properties": {"total": INT, "busy": INT}}}}}}},
        "Residency": {"type": "object", "required": ["model", "id", "status"], "properties": {
            "model": STR, "id": STR, "status": {"enum": ["loaded", "unloaded", "unloading", "not_loaded"]},
            "size_in_memory": INT}},
    }


def paths() -> dict:
    named = ref("OllamaNamed")
    embedded = json_content({"type": "object", "required": ["embedding"], "properties": {
        "embedding": {"type": "array", "items": {"type": "number"}}}})
    openai_ok = json_content({"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": OBJ}, "model": STR, "usage": OBJ}})
    residency_statuses = (400, 401, 404, 422, 502, 503, 504, 507)
    return {
        "/api/version": {"get": _op("Ollama: the API version followed", json_content({
            "type": "object", "required": ["version"], "properties": {"version": STR}}), statuses=())},
        "/api/tags": {"get": _op("Ollama: installed models", json_content(ref("OllamaTags")), statuses=())},
        "/api/show": {"post": _op("Ollama: one installed model", json_content(ref("OllamaShow")), named)},
        "/api/ps": {"get": _op("Ollama: the models in memory", json_content(ref("OllamaPs")), statuses=(502, 503, 504))},
        "/api/pull": {"post": {**_op("Ollama: pull a model (this proxy's pull, Ollama's progress lines)", _streamed(
            ref("OllamaProgress"), "NDJSON progress lines, or with stream:false the last"), named), **GUARDED}},
        "/api/delete": {"delete": {**_op("Ollama: delete an installed model", {"description": "deleted"}, named),
                                   **GUARDED}},
        "/api/chat": {"post": _op("Ollama: chat", _streamed(ref("OllamaAnswer"), "NDJSON or one answer"),
                                  ref("OllamaChatRequest"))},
        "/api/generate": {"post": _op("Ollama: generate", _streamed(ref("OllamaAnswer"), "NDJSON or one answer"),
                                      ref("OllamaGenerateRequest"))},
        "/api/embed": {"post": _op("Ollama: embeddings", json_content(ref("OllamaEmbed")), ref("OllamaEmbedRequest"))},
        "/api/embeddings": {"post": _op("Ollama: one embedding (older endpoint)", embedded, named)},
        **_model_making_paths(),
        "/v1/embeddings": {"post": _op("OpenAI embeddings", openai_ok, OBJ, schema="OpenAIError",
                                       statuses=(400, 404, 422, 502, 503, 504, 507))},
        "/v1/api/running": {"get": _op("The models the backend holds in memory", json_content(ref("Running")),
                                       schema="Error", statuses=(502, 503, 504))},
        "/v1/api/load": {"post": {**_op("Load a model ahead of use; answers once loaded", json_content(ref("Residency")),
                                        ref("ResidencyRequest"), schema="Error", statuses=residency_statuses),
                                  **GUARDED}},
        "/v1/api/unload": {"post": {**_op("Unload a model from memory", json_content(ref("Residency")),
                                          ref("ResidencyRequest"), schema="Error", statuses=residency_statuses),
                                    **GUARDED}},
    }


def _model_making_paths() -> dict:
    """Blobs, create, copy and push: a user's own GGUF installed, named and published
    (proxy/routes/ollama_models.py)."""
    digest = {"name": "digest", "in": "path", "required": True,
              "schema": {**STR, "pattern": "^sha256[:-][0-9a-f]{64}$"}}
    upload = {"summary": "Ollama: upload a blob (HEAD: 200 when held, 404 when not); kept only when its sha256 is "
                         "the digest", "parameters": [digest],
              "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {
                  **STR, "format": "binary"}}}},
              "responses": {"200": {"description": "held already"}, "201": {"description": "uploaded"},
                            **_errors("OllamaError", (400, 401, 507))}, **GUARDED}
    create = {"type": "object", "required": ["model"], "properties": {
        "model": STR, "files": {"type": "object", "additionalProperties": STR}, "from": STR, "stream": BOOL}}
    copy = {"type": "object", "required": ["source", "destination"], "properties": {"source": STR,
                                                                                   "destination": STR}}
    progress = _streamed(ref("OllamaProgress"), "NDJSON progress lines, or with stream:false the last")
    return {
        "/api/blobs/{digest}": {"post": upload},
        "/api/create": {"post": {**_op("Ollama: install an uploaded GGUF blob under a name (or name a model)",
                                       progress, create), **GUARDED}},
        "/api/copy": {"post": {**_op("Ollama: one more name for an installed model", {"description": "copied"},
                                     copy), **GUARDED}},
        "/api/push": {"post": {**_op("Ollama: publish a model to the registry its name holds (this proxy's push)",
                                     progress, ref("OllamaNamed")), **GUARDED}},
    }
