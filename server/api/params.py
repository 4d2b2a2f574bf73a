"""Request bodies of the generation endpoints, parsed and type-checked into one value."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.json_tree import json_tree_problem
from core.units import parse_keep_alive

from ..chat.reasoning import parse_thinking
from ..chat.tools import parse_tool_use
from ..errors import InvalidRequest
from ..residency.keep_alive import KeepAlive

# Without max_tokens, every endpoint generates to the end of sequence or of the context (docs/api.md,
# "Generating"): llama-cpp-python's own default for completions is 16 tokens, Shimmy's 256.
UNTIL_DONE: Mapping[str, Any] = {"max_tokens": None}
# Shimmy's sampling defaults for /api/generate; the OpenAI endpoints keep llama-cpp-python's.
SHIMMY_DEFAULTS: Mapping[str, Any] = {**UNTIL_DONE, "temperature": 0.7, "top_p": 0.9, "top_k": 40}
# llama-cpp-python's chat temperature (completions keep server.engine.sampling.Sampling's). No repeat penalty
# unless asked, as OpenAI's API and llama-server (docs/api.md, "Generating"); Ollama's endpoints send its own.
CHAT_DEFAULTS: Mapping[str, Any] = {"temperature": 0.2}

MAX_MESSAGES = 2048  # chat messages in one request, as OpenAI's API bounds them (docs/api.md, Limits)
_NUMBER = (int, float)
_TYPE_NAMES = {(str,): "a string", (bool,): "true or false"}
# Optional sampling fields: name -> (accepted types, lowest allowed value).
_SAMPLING_FIELDS: Mapping[str, tuple[tuple[type, ...], float | None]] = {
    "max_tokens": ((int,), 1),  # 0 is refused, as OpenAI refuses it (it would read as "no limit")
    "temperature": (_NUMBER, 0),
    "top_p": (_NUMBER, 0),
    "top_k": ((int,), 0),
    "min_p": (_NUMBER, 0),
    "seed": ((int,), None),
    "presence_penalty": (_NUMBER, None),
    "frequency_penalty": (_NUMBER, None),
    "repeat_penalty": (_NUMBER, 0),
    "repeat_last_n": ((int,), -1),
}


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate: a raw `prompt` or chat `messages`, and the sampling settings."""

    model: str
    prompt: str | None = None
    messages: list[dict] | None = None
    system: str | None = None
    stream: bool = False
    sampling: Mapping[str, Any] = field(default_factory=dict)  # server.engine.sampling.Sampling's fields, max_tokens, stop
    kind: str = "completion"  # "generate" (Shimmy's), "completion" or "chat"
    response_format: Any = None  # OpenAI's; server.engine.sampling.grammar_for checks it
    keep_alive: KeepAlive | None = None  # None: the request has none (the model keeps what it has)
    include_usage: bool = False  # stream_options.include_usage: a last chunk with `usage`
    n_ctx: int | None = None  # the context asked for (Ollama's num_ctx): Residency.acquire's n_ctx
    truncate: bool = False  # drop the oldest messages of a prompt too long for the context (server.chat.truncation)
    suffix: str | None = None  # completions' text after the gap: a fill-in-the-middle prompt (server.chat.fim)
    tools: Any = None  # server.chat.tools.ToolUse: chat's tools and tool_choice
    thinking: bool | None = None  # chat: whether the model should reason (None: as its template does)


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    inputs: list[str]
    keep_alive: KeepAlive | None = None


def parse_json_body(raw: bytes) -> dict:
    """The request body as a JSON object, whatever the Content-Type says.

    Raises:
        InvalidRequest: the body is not a JSON object.
    """
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidRequest("the request body is not valid JSON") from err
    except RecursionError as err:  # not a ValueError: nesting deeper than the parser goes
        raise InvalidRequest("the request body is nested too deeply") from err
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    problem = json_tree_problem(body, raw)
    if problem is not None:
        raise InvalidRequest(f"the request body is not usable: {problem}")
    return body


def parse_generate(body: dict) -> GenerationRequest:
    """Shimmy's `{model, prompt | messages, system?, max_tokens?, ...}`.

    Raises:
        InvalidRequest: a missing field or a field of the wrong type.
    """
    prompt = _optional(body, "prompt", (str,))
    messages = _messages(body) if body.get("messages") is not None else None
    if prompt is None and messages is None:
        raise InvalidRequest("give `prompt` (a string) or `messages` (a list of {role, content})", param="prompt")
    return GenerationRequest(
        model=_model(body),
        prompt=prompt,
        messages=messages,
        system=_optional(body, "system", (str,)),
        stream=_stream(body),
        sampling={**SHIMMY_DEFAULTS, **_sampling(body)},
        kind="generate",
        keep_alive=keep_alive(body),
        **context_fields(body),
    )


def parse_completion(body: dict) -> GenerationRequest:
    """OpenAI's `/v1/completions` body; `prompt` may be a string or a list of one string.

    Raises:
        InvalidRequest: a missing field or a field of the wrong type.
    """
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest("`prompt` must be a string (one prompt a request)", param="prompt")
    return GenerationRequest(
        model=_model(body), prompt=prompt, stream=_stream(body), sampling={**UNTIL_DONE, **_sampling(body)},
        response_format=body.get("response_format"), keep_alive=keep_alive(body),
        include_usage=_include_usage(body), suffix=_optional(body, "suffix", (str,)) or None, **context_fields(body),
    )


def parse_chat(body: dict) -> GenerationRequest:
    """OpenAI's `/v1/chat/completions` body.

    Raises:
        InvalidRequest: a missing field or a field of the wrong type.
    """
    sampling = {**UNTIL_DONE, **_sampling(body)}
    if sampling["max_tokens"] is None and body.get("max_completion_tokens") is not None:
        sampling["max_tokens"] = _number(body, "max_completion_tokens", (int,), 1)
    return GenerationRequest(
        model=_model(body), messages=_messages(body), stream=_stream(body), sampling={**CHAT_DEFAULTS, **sampling},
        kind="chat", response_format=body.get("response_format"), keep_alive=keep_alive(body),
        include_usage=_include_usage(body), tools=parse_tool_use(body), thinking=parse_thinking(body),
        **context_fields(body),
    )


def parse_embeddings(body: dict) -> EmbeddingRequest:
    """OpenAI's `/v1/embeddings` body: `input` a string or a list of strings.

    Raises:
        InvalidRequest: a missing field or a field of the wrong type.
    """
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs or not all(isinstance(item, str) for item in inputs):
        raise InvalidRequest("`input` must be a string or a non-empty list of strings", param="input")
    return EmbeddingRequest(model=_model(body), inputs=inputs, keep_alive=keep_alive(body))


def keep_alive(body: dict) -> KeepAlive | None:
    """The request's `keep_alive`, or None when it has none.

    Raises:
        InvalidRequest: not a duration, a number, -1 or 0.
    """
    if body.get("keep_alive") is None:
        return None
    try:
        return KeepAlive(parse_keep_alive(body["keep_alive"]))
    except ValueError as err:
        raise InvalidRequest(f"`keep_alive`: {err}", param="keep_alive") from err


def context_fields(body: dict) -> dict[str, Any]:
    """`n_ctx` (a positive integer, or absent) and `truncate` (a boolean, false when absent), the fields the
    proxy's Ollama API sets from `options.num_ctx` and `truncate` (docs/api.md, Backend endpoints).

    Raises:
        InvalidRequest: a field of the wrong type.
    """
    n_ctx = _number(body, "n_ctx", (int,), 1) if body.get("n_ctx") is not None else None
    return {"n_ctx": n_ctx, "truncate": bool(_optional(body, "truncate", (bool,)))}


def _include_usage(body: dict) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict):
        raise InvalidRequest("`stream_options` must be an object", param="stream_options")
    return bool(options.get("include_usage"))


def model_name(body: dict) -> str:
    """The body's `model`.

    Raises:
        InvalidRequest: absent or not a non-empty string.
    """
    return _model(body)


def _model(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("`model` must be a model id; GET /v1/models lists them", param="model")
    return model


def _stream(body: dict) -> bool:
    return bool(_optional(body, "stream", (bool,)) or False)


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty list of {role, content}", param="messages")
    if len(messages) > MAX_MESSAGES:  # before the template renders them all (seconds of CPU for tens of thousands)
        raise InvalidRequest(f"`messages` has {len(messages)} messages; at most {MAX_MESSAGES} a request",
                             param="messages")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest("each message must be an object with a string `role`", param="messages")
        if not isinstance(message.get("content"), (str, list, type(None))):
            raise InvalidRequest("a message's `content` must be a string or a list of parts", param="messages")
    return messages


def _sampling(body: dict) -> dict[str, Any]:
    values = {}
    for name, (types, lowest) in _SAMPLING_FIELDS.items():
        if body.get(name) is not None:
            values[name] = _number(body, name, types, lowest)
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
            raise InvalidRequest("`stop` must be a string or a list of strings", param="stop")
        values["stop"] = stop
    return values


def _number(body: dict, name: str, types: tuple[type, ...], lowest: float | None) -> Any:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, types):
        kind = "an integer" if types == (int,) else "a number"
        raise InvalidRequest(f"`{name}` must be {kind}", param=name)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(f"`{name}` must be a finite number", param=name)
    if lowest is not None and value < lowest:
        raise InvalidRequest(f"`{name}` must be at least {lowest}", param=name)
    return value


def _optional(body: dict, name: str, types: tuple[type, ...]) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, types):
        raise InvalidRequest(f"`{name}` must be {_TYPE_NAMES.get(types, 'of another type')}", param=name)
    return value
