"""A slow inference backend for load and failure tests: a WSGI app to run under real gunicorn.

    python -m gunicorn -k gthread --threads 32 --bind 127.0.0.1:PORT tests.fakes.backend:app

Like `python -m server` (gunicorn gthread, one thread a request), it answers `GET /health` at once
and streams every POST as SSE: one OpenAI chat chunk every FAKE_BACKEND_INTERVAL_S seconds,
FAKE_BACKEND_EVENTS of them, then `data: [DONE]`. Each stream holds one of its threads throughout, as a
generation does. Tests kill the process mid-stream to play a backend that dies.

`GET /stats` answers as the batching backend's (BACKEND_CONTRACT, for the proxy's /metrics) from the streams
it served: each event is a generated token, a prompt's words are its tokens, FAKE_BACKEND_SLOTS slots (the
streams beyond them counted as queued). FAKE_BACKEND_STATS=off answers 404 there, as Shimmy or an older backend.
"""
from __future__ import annotations

import json
import os
import threading
import time

from tests.fakes.backend_routes import answer_route

INTERVAL_S = float(os.environ.get("FAKE_BACKEND_INTERVAL_S", "0.5"))
EVENTS = int(os.environ.get("FAKE_BACKEND_EVENTS", "10"))
STATS = os.environ.get("FAKE_BACKEND_STATS", "on") != "off"
SLOTS = int(os.environ.get("FAKE_BACKEND_SLOTS", "4"))
STATS_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "GET" and environ.get("PATH_INFO") == "/health":
        body = json.dumps({"status": "ok", "gpu_offload": False, "models": {"total": 1}}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    if environ["REQUEST_METHOD"] == "GET" and environ.get("PATH_INFO") == "/stats":
        return _stats(start_response)
    raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))  # read() alone may wait for more
    answered = answer_route(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), raw, EVENTS)
    if answered is not None:  # the contract's routes beyond streaming (tests/fakes/backend_routes.py)
        SERVED.answered(answered[2])
        start_response(*answered[:2])
        return [answered[2]]
    start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
    return _events(_prompt_words(raw), time.monotonic())


def chunk_event(index: int) -> bytes:
    chunk = {"object": "chat.completion.chunk", "model": "fake", "choices": [
        {"index": 0, "delta": {"content": f"tok{index} "}, "finish_reason": None}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def _events(prompt_tokens: int, arrived: float):
    SERVED.start(prompt_tokens)
    try:
        last = arrived
        for index in range(EVENTS):
            yield chunk_event(index)
            last = SERVED.token(first=index == 0, since=last)
            time.sleep(INTERVAL_S)
        yield b"data: [DONE]\n\n"
    finally:  # also when the client hangs up: the stream's slot is free again
        SERVED.end()


class _Histogram:
    """Cumulative bucket counts, sum and count, in /stats's JSON shape."""

    def __init__(self):
        self.counts, self.sum, self.count = [0] * len(STATS_BUCKETS_S), 0.0, 0

    def observe(self, seconds: float) -> None:
        self.counts = [n + (seconds <= le) for n, le in zip(self.counts, STATS_BUCKETS_S)]
        self.sum, self.count = self.sum + seconds, self.count + 1

    def as_json(self) -> dict:
        buckets = [[le, n] for le, n in zip(STATS_BUCKETS_S, self.counts)] + [["+Inf", self.count]]
        return {"buckets": buckets, "sum": self.sum, "count": self.count}


class _Served:
    """What the streams of this process did, for GET /stats."""

    def __init__(self):
        self.lock = threading.Lock()
        self.prompt_tokens = self.generated_tokens = self.streams = 0
        self.ttft, self.tpot = _Histogram(), _Histogram()

    def start(self, prompt_tokens: int) -> None:
        with self.lock:
            self.streams += 1
            self.prompt_tokens += prompt_tokens

    def token(self, first: bool, since: float) -> float:
        now = time.monotonic()
        with self.lock:
            self.generated_tokens += 1
            (self.ttft if first else self.tpot).observe(now - since)
        return now

    def answered(self, body: bytes) -> None:
        """A whole (not streamed) answer: its `usage` counts as the real backend counts it."""
        try:
            usage = json.loads(body).get("usage") or {}
        except (ValueError, AttributeError):
            return
        if "completion_tokens" in usage:
            with self.lock:
                self.prompt_tokens += usage.get("prompt_tokens", 0)
                self.generated_tokens += usage["completion_tokens"]

    def end(self) -> None:
        with self.lock:
            self.streams -= 1

    def as_json(self) -> dict:
        with self.lock:
            return {"prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
                    "slots": {"total": SLOTS, "busy": min(SLOTS, self.streams)},
                    "queue": max(0, self.streams - SLOTS), "ttft_seconds": self.ttft.as_json(),
                    "tpot_seconds": self.tpot.as_json(), "models": []}  # per-model gauges: the real backend's


SERVED = _Served()


def _stats(start_response):
    if not STATS:
        start_response("404 NOT FOUND", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        return [b"Not Found"]
    body = json.dumps(SERVED.as_json()).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _prompt_words(raw: bytes) -> int:
    """A request's prompt (or its messages' contents) in words, the fake's tokens."""
    try:
        body = json.loads(raw)
        texts = [body["prompt"]] if "prompt" in body else [m["content"] for m in body["messages"]]
        return sum(len(str(text).split()) for text in texts)
    except (ValueError, TypeError, KeyError):
        return 0
