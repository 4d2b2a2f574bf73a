"""The backend's OpenAI-shaped answers (one JSON object, or SSE chunks) as Ollama's chat and generate answers
(one object, or NDJSON lines ending with a `done: true` line that carries the metrics)."""
from __future__ import annotations

import json
import logging
import time
from typing import Iterator

from proxy.errors import ErrorCode, ProxyError
from proxy.backend.chat import ChatAnswer, Piece, chat_pieces
from proxy.ollama.convert import DONE_REASONS, metrics, now_iso
from proxy.ollama.tools import message_extras, ollama_tool_calls
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
    if chat:
        done["message"].update(message_extras(choice["message"]))
    done["done_reason"] = DONE_REASONS.get(choice.get("finish_reason"), "stop")
    done.update(metrics(time.monotonic() - started, None, _count(usage, "prompt_tokens"),
                        _count(usage, "completion_tokens")))
    return done


def ndjson_lines(upstream: Upstream, name: str, chat: bool, started: float) -> Iterator[str]:
    """Ollama's NDJSON stream from the backend's SSE chunks (one a token): text and thinking as they come, tool
    calls whole on a line of their own at the end (Ollama's clients read each call's arguments as an object); a
    failure part way is a last `{"error": ...}` line, which Ollama's clients raise."""
    first_s, tokens, answer = None, 0, ChatAnswer()
    try:
        for part in chat_pieces(upstream, answer):
            if part.kind in ("text", "reasoning"):
                first_s = first_s if first_s is not None else time.monotonic() - started
                tokens += 1
                yield json.dumps(_line(name, part, chat)) + "\n"
    except ProxyError as err:
        log.warning("backend stream for %s broke off: %s", name, err.code)
        yield json.dumps({"error": err.message}) + "\n"
        return
    if answer.calls and chat:
        calls = piece(name, "", chat)
        calls["message"]["tool_calls"] = ollama_tool_calls(answer.calls)
        yield json.dumps(calls) + "\n"
    done = piece(name, "", chat, done=True)
    done["done_reason"] = DONE_REASONS.get(answer.finish_reason, "stop")
    done.update(metrics(time.monotonic() - started, first_s, answer.prompt_tokens,
                        answer.completion_tokens or tokens))
    yield json.dumps(done) + "\n"


def _line(name: str, part: Piece, chat: bool) -> dict:
    """A text piece as `content` (chat) or `response` (generate); thinking as `thinking` beside an empty one."""
    if part.kind == "text":
        return piece(name, part.text, chat)
    line = piece(name, "", chat)
    (line["message"] if chat else line)["thinking"] = part.text
    return line


def _count(usage, field: str) -> int:
    value = usage.get(field) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
