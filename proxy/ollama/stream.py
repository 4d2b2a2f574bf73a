"""The backend's OpenAI-shaped answers (one JSON object, or SSE chunks) as Ollama's chat and generate answers
(one object, or NDJSON lines ending with a `done: true` line that carries the metrics)."""
from __future__ import annotations

import json
import logging
import time
from typing import Iterator

from proxy.errors import ErrorCode, ProxyError
from proxy.ollama.convert import DONE_REASONS, metrics, now_iso
from proxy.backend.upstream import Upstream

log = logging.getLogger(__name__)


def piece(name: str, text: str, chat: bool, done: bool = False) -> dict:
    """One chat or generate answer object without metrics: `message` for chat, `response` for generate."""
    said = {"message": {"role": "assistant", "content": text}} if chat else {"response": text}
    return {"model": name, "created_at": now_iso(), **said, "done": done}


def whole_answer(upstream: Upstream, name: str, chat: bool, started: float) -> dict:
    """The backend's completion object as Ollama's `stream: false` answer.

    Raises:
        ProxyError: backend_unavailable (an answer of another shape), backend_timeout.
    """
    answer = upstream.json()
    try:
        choice = answer["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        usage = answer.get("usage") or {}
    except (KeyError, IndexError, TypeError) as err:
        raise ProxyError(ErrorCode.BACKEND_UNAVAILABLE,
                         "the backend answered a completion of an unknown shape") from err
    done = piece(name, text or "", chat, done=True)
    done["done_reason"] = DONE_REASONS.get(choice.get("finish_reason"), "stop")
    done.update(metrics(time.monotonic() - started, None, _count(usage, "prompt_tokens"),
                        _count(usage, "completion_tokens")))
    return done


def ndjson_lines(upstream: Upstream, name: str, chat: bool, started: float) -> Iterator[str]:
    """Ollama's NDJSON stream from the backend's SSE chunks (one a token); a failure part way is a last
    `{"error": ...}` line, which Ollama's clients raise."""
    first_s, tokens, reason, usage = None, 0, None, {}
    try:
        for data in upstream.sse_data():
            if data.strip() == "[DONE]":
                break
            chunk = _parse(data)
            if "error" in chunk:
                yield _error_line(chunk["error"])
                return
            text, finish = _chunk_text(chunk)
            reason, usage = finish or reason, chunk.get("usage") or usage
            if text:
                first_s = first_s if first_s is not None else time.monotonic() - started
                tokens += 1
                yield json.dumps(piece(name, text, chat)) + "\n"
    except ProxyError as err:
        log.warning("backend stream for %s broke off: %s", name, err.code)
        yield json.dumps({"error": err.message}) + "\n"
        return
    done = piece(name, "", chat, done=True)
    done["done_reason"] = DONE_REASONS.get(reason, "stop")
    done.update(metrics(time.monotonic() - started, first_s, _count(usage, "prompt_tokens"),
                        _count(usage, "completion_tokens") or tokens))
    yield json.dumps(done) + "\n"


def _parse(data: str) -> dict:
    try:
        chunk = json.loads(data)
    except ValueError:
        return {}
    return chunk if isinstance(chunk, dict) else {}


def _chunk_text(chunk: dict) -> tuple[str, str | None]:
    """The text a chunk adds (chat's delta or a completion's text) and its finish reason."""
    choices = chunk.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
    text = delta.get("content") if "delta" in choice else choice.get("text")
    return (text if isinstance(text, str) else ""), choice.get("finish_reason")


def _error_line(error) -> str:
    message = error.get("message") if isinstance(error, dict) else error
    return json.dumps({"error": message if isinstance(message, str) else "the backend failed mid-answer"}) + "\n"


def _count(usage, field: str) -> int:
    value = usage.get(field) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
