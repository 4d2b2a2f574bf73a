"""A slow inference backend for load and failure tests: a WSGI app to run under real gunicorn.

    python -m gunicorn -k gthread --threads 32 --bind 127.0.0.1:PORT tests.fakes.backend:app

Like `python -m server` (gunicorn gthread, one thread a request), it answers `GET /health` at once
and streams every POST as SSE: one OpenAI chat chunk every FAKE_BACKEND_INTERVAL_S seconds,
FAKE_BACKEND_EVENTS of them, then `data: [DONE]`. Each stream holds one of its threads throughout, as a
generation does. Tests kill the process mid-stream to play a backend that dies.
"""
from __future__ import annotations

import json
import os
import time

INTERVAL_S = float(os.environ.get("FAKE_BACKEND_INTERVAL_S", "0.5"))
EVENTS = int(os.environ.get("FAKE_BACKEND_EVENTS", "10"))


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "GET" and environ.get("PATH_INFO") == "/health":
        body = json.dumps({"status": "ok", "gpu_offload": False, "models": {"total": 1}}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
    return _events()


def chunk_event(index: int) -> bytes:
    chunk = {"object": "chat.completion.chunk", "model": "fake", "choices": [
        {"index": 0, "delta": {"content": f"tok{index} "}, "finish_reason": None}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def _events():
    for index in range(EVENTS):
        yield chunk_event(index)
        time.sleep(INTERVAL_S)
    yield b"data: [DONE]\n\n"
