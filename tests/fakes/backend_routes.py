"""The fake backend's routes of BACKEND_CONTRACT beyond streaming chat: answers in the real backend's shapes.

- `POST /v1/chat/completions`, `/v1/completions` with `stream: false`: one answer of `events` tokens
  (`tok0 tok1 ...`) with OpenAI's `usage`; streamed requests are left to the fake's SSE stream.
- `POST /v1/embeddings`: one 8-number vector a string, made from the string's bytes (same text, same vector).
- `GET /api/running`, `POST /api/load`, `POST /api/unload`: residency kept in this process. A model whose id
  starts with `too-big` answers 507 model_too_large, one starting with `missing` 404 model_not_found.
- `GET /_requests`: the bodies these routes and the streams received, in order (what the proxy sent).
"""
from __future__ import annotations

import datetime
import json
import threading

DIMENSIONS = 8
SIZE_IN_MEMORY = 300_000_000
LOCK = threading.Lock()
RECEIVED: list[dict] = []
LOADED: dict[str, dict] = {}

Answer = tuple[str, list[tuple[str, str]], bytes]


def answer_route(method: str, path: str, raw: bytes, events: int) -> Answer | None:
    """The answer of one of these routes, or None for the fake's default SSE stream."""
    if method == "GET" and path == "/_requests":
        with LOCK:
            return _json(200, {"requests": list(RECEIVED)})
    if method == "GET" and path == "/api/running":
        with LOCK:
            return _json(200, {"models": list(LOADED.values())})
    body = _parse(raw)
    with LOCK:
        RECEIVED.append({"path": path, "body": body})
    if method != "POST" or body is None:
        return None
    if path in ("/api/load", "/api/unload"):
        return _residency(path, body)
    if path == "/v1/embeddings":
        return _embeddings(body)
    if path in ("/v1/chat/completions", "/v1/completions") and body.get("stream") is not True:
        return _completion(path, body, events)
    return None


def _parse(raw: bytes) -> dict | None:
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _json(status: int, body: dict) -> Answer:
    reasons = {200: "OK", 400: "BAD REQUEST", 404: "NOT FOUND", 507: "INSUFFICIENT STORAGE"}
    data = json.dumps(body).encode()
    return f"{status} {reasons[status]}", [("Content-Type", "application/json"),
                                          ("Content-Length", str(len(data)))], data


def _error(status: int, code: str, message: str) -> Answer:
    return _json(status, {"status": "error", "error": message, "code": code})


def _completion(path: str, body: dict, events: int) -> Answer:
    text = "".join(f"tok{index} " for index in range(events))
    usage = {"prompt_tokens": 5, "completion_tokens": events, "total_tokens": 5 + events}
    if path == "/v1/completions":
        choice = {"index": 0, "text": text, "finish_reason": "length"}
        return _json(200, {"object": "text_completion", "model": body.get("model"), "choices": [choice],
                           "usage": usage})
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    return _json(200, {"object": "chat.completion", "model": body.get("model"), "choices": [choice], "usage": usage})


def _embeddings(body: dict) -> Answer:
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):  # OpenAI's error shape there
        return _json(400, {"error": {"message": "`input` must be a string or a list of strings",
                                     "type": "invalid_request_error", "code": "invalid_request", "param": "input"}})
    data = [{"object": "embedding", "index": i, "embedding": _vector(text)} for i, text in enumerate(texts)]
    tokens = sum(len(text.split()) for text in texts)
    return _json(200, {"object": "list", "data": data, "model": body.get("model"),
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _vector(text: str) -> list[float]:
    raw = text.encode() or b"\0"
    return [float(raw[i % len(raw)] + i) for i in range(DIMENSIONS)]


def _residency(path: str, body: dict) -> Answer:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return _error(400, "invalid_request", "`model` must be a model id")
    if model.startswith("missing"):
        return _error(404, "model_not_found", f"model {model!r} is not installed")
    if path == "/api/unload":
        with LOCK:
            found = LOADED.pop(model, None)
        return _json(200, {"id": model, "status": "unloaded" if found else "not_loaded"})
    if model.startswith("too-big"):
        return _error(507, "model_too_large", f"model {model} needs 90 GiB; MAX_MODEL_MEMORY is 8 GiB")
    now = datetime.datetime.now(datetime.timezone.utc)
    forever = body.get("keep_alive") in (-1, "-1")
    expires = None if forever else (now + datetime.timedelta(minutes=5)).isoformat(timespec="seconds")
    entry = {"id": model, "size_in_memory": SIZE_IN_MEMORY, "gpu_layers": 0, "n_ctx": body.get("n_ctx") or 4096,
             "slots": {"total": 4, "busy": 0},
             "queue": 0, "expires_at": expires, "loaded_at": now.isoformat(timespec="seconds")}
    with LOCK:
        LOADED[model] = entry
    return _json(200, {"id": model, "status": "loaded", "size_in_memory": SIZE_IN_MEMORY})
