"""The backend's OpenAI chat completions as the translating routes read them (Anthropic's Messages, OpenAI's
Responses, Ollama's chat): text, reasoning and tool-call pieces as a stream brings them, and the whole answer
they add up to. One reader of OpenAI's chunk shapes, so each dialect only says how its own shapes look."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Iterator

from core.errors import STATUS_BY_CODE
from proxy.backend.upstream import Upstream, call_backend
from proxy.errors import ErrorCode, ProxyError
from proxy.pulls.pulled_names import backend_model_id
from proxy.services import services

CHAT_PATH = "/v1/chat/completions"


@dataclass
class ToolCall:
    """One call the model made: OpenAI's `id`, `function.name` and `function.arguments` (a JSON string)."""

    id: str
    name: str
    arguments: str = ""

    def is_complete(self) -> bool:
        """Whether the arguments are a whole JSON object."""
        try:
            return isinstance(json.loads(self.arguments), dict)
        except ValueError:
            return False

    def parsed_arguments(self) -> dict:
        """The arguments as an object; {} when they are empty, and `{"arguments": text}` when they do not parse
        as an object (a backend without a grammar may send anything), so a client always gets an object."""
        if not self.arguments.strip():
            return {}
        try:
            value = json.loads(self.arguments)
        except ValueError:
            return {"arguments": self.arguments}
        return value if isinstance(value, dict) else {"arguments": value}


@dataclass(frozen=True)
class Piece:
    """What one chunk added: `text` or `reasoning` (its text), `call` (a new tool call, `index` its place among
    the calls) or `arguments` (more of call `index`'s arguments)."""

    kind: str
    text: str = ""
    index: int = 0
    call: ToolCall | None = None


@dataclass
class ChatAnswer:
    """The answer so far; complete once the stream ended."""

    text: str = ""
    reasoning: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def cut_short(self) -> bool:
        """Whether the token limit ended the answer before it was whole: a limit met after complete tool calls
        (arguments that parse) cut nothing the client needs."""
        if self.finish_reason != "length":
            return False
        return not self.calls or not all(call.is_complete() for call in self.calls)


def backend_model(name: Any) -> tuple[str, list[str]]:
    """The id the backend knows for a `model` as a client names it (as pulled, `owner/name:QUANT`, or an id the
    backend resolves itself), and the installed files it names.

    Raises: ProxyError invalid_request (no model named), model_not_found (a pulled name nothing matches).
    """
    if not isinstance(name, str) or not name:
        raise ProxyError(ErrorCode.INVALID_REQUEST, "model is required: the id of an installed model")
    store = services().store
    model_id = backend_model_id(store, name)
    return model_id, store.files_of_model(model_id)


def start_chat(body: dict, files: list[str]) -> Upstream:
    """Send an OpenAI chat body to the backend as a stream with usage in its last chunk.

    Raises: ProxyError from the backend before it answered (its code and status).
    """
    return call_backend(CHAT_PATH, {**body, "stream": True, "stream_options": {"include_usage": True}}, files)


def chat_pieces(upstream: Upstream, answer: ChatAnswer) -> Iterator[Piece]:
    """The pieces of the backend's chat (or completion) stream as they arrive; `answer` adds them up (finish reason and usage too).

    Raises: ProxyError backend_unavailable, backend_timeout, or the code of an error event in the stream.
    """
    ours: dict[Any, int] = {}  # the backend's tool-call index -> the call's place in answer.calls
    for data in upstream.sse_data():
        if data.strip() == "[DONE]":
            return
        chunk = _parsed(data)
        if "error" in chunk:
            raise _stream_error(chunk["error"])
        _count_usage(chunk.get("usage"), answer)
        choice = _first_choice(chunk)
        answer.finish_reason = choice.get("finish_reason") or answer.finish_reason
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        for kind, key in (("reasoning", "reasoning_content"), ("text", "content")):
            if isinstance(delta.get(key), str) and delta[key]:
                yield _added(answer, Piece(kind, delta[key]))
        for call in delta.get("tool_calls") or []:
            yield from _call_pieces(call, ours, answer)
        if "delta" not in choice and isinstance(choice.get("text"), str) and choice["text"]:
            yield _added(answer, Piece("text", choice["text"]))  # a completion's chunk (Ollama's raw generate)


def read_chat(upstream: Upstream) -> ChatAnswer:
    """The whole answer of a streamed backend chat.

    Raises: as chat_pieces.
    """
    answer = ChatAnswer()
    for _ in chat_pieces(upstream, answer):
        pass
    return answer


def new_id(prefix: str) -> str:
    """An id in the shape the dialects use (`msg_...`, `toolu_...`, `resp_...`): a prefix and 24 random letters."""
    return prefix + secrets.token_hex(12)


def _added(answer: ChatAnswer, piece: Piece) -> Piece:
    if piece.kind == "text":
        answer.text += piece.text
    elif piece.kind == "reasoning":
        answer.reasoning += piece.text
    return piece


def _call_pieces(delta: Any, ours: dict[Any, int], answer: ChatAnswer) -> Iterator[Piece]:
    """A tool call's delta: the first for an index opens the call (its id and name), later ones add arguments."""
    if not isinstance(delta, dict):
        return
    function = delta.get("function") if isinstance(delta.get("function"), dict) else {}
    key = delta.get("index", len(ours))
    if key not in ours:
        ours[key] = len(answer.calls)
        call_id = delta.get("id") if isinstance(delta.get("id"), str) and delta["id"] else new_id("call_")
        answer.calls.append(ToolCall(call_id, str(function.get("name") or "")))
        yield Piece("call", index=ours[key], call=answer.calls[-1])
    elif isinstance(function.get("name"), str):
        answer.calls[ours[key]].name += function["name"]
    arguments = function.get("arguments")
    if isinstance(arguments, str) and arguments:
        answer.calls[ours[key]].arguments += arguments
        yield Piece("arguments", arguments, index=ours[key])


def _parsed(data: str) -> dict:
    try:
        chunk = json.loads(data)
    except ValueError:
        return {}
    return chunk if isinstance(chunk, dict) else {}


def _first_choice(chunk: dict) -> dict:
    choices = chunk.get("choices")
    return choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}


def _count_usage(usage: Any, answer: ChatAnswer) -> None:
    if not isinstance(usage, dict):
        return
    for field_name, attribute in (("prompt_tokens", "prompt_tokens"), ("completion_tokens", "completion_tokens")):
        value = usage.get(field_name)
        if isinstance(value, int) and not isinstance(value, bool):
            setattr(answer, attribute, value)


def _stream_error(error: Any) -> ProxyError:
    """An error event of the backend's stream as our error, keeping its code when it is one of ours."""
    error = error if isinstance(error, dict) else {"message": error}
    code = error.get("code") if error.get("code") in STATUS_BY_CODE else ErrorCode.BACKEND_UNAVAILABLE
    message = error.get("message") if isinstance(error.get("message"), str) else "the backend failed mid-answer"
    return ProxyError(code, message)
