"""Ollama's chat, generate and embed requests as the backend's OpenAI-compatible bodies, and the backend's
answers back in Ollama's shapes (ollama/ollama api/types.go: ChatRequest, GenerateRequest, Metrics, ...)."""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any, Callable

from core.units import parse_keep_alive
from proxy.errors import ErrorCode, ProxyError
from proxy.ollama.tools import chat_fields, openai_messages

# Ollama's `options` the backend has a sampling field for (num_ctx: context_options); the others (num_gpu,
# mirostat, ...) are set at load time by our settings, or have no llama.cpp counterpart here, and are ignored as
# Ollama ignores unknown ones.
OPTIONS = {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "seed": "seed",
           "num_predict": "max_tokens", "stop": "stop", "repeat_penalty": "repeat_penalty",
           "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
           "repeat_last_n": "repeat_last_n"}
# Ollama's documented defaults for what `options` leaves out (api/types.go DefaultOptions): the backend's own
# defaults are OpenAI's (no repeat penalty), so an Ollama client gets what Ollama would have sampled with.
OLLAMA_DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.0, "repeat_penalty": 1.1,
                   "repeat_last_n": 64}
NS = 1_000_000_000  # Ollama's durations are nanoseconds
DONE_REASONS = {"stop": "stop", "length": "length", None: "stop"}


@dataclass(frozen=True)
class Translated:
    """A backend request made from an Ollama one: where it goes, its body, and what the answer should say."""

    path: str
    body: dict
    stream: bool


def chat_request(body: dict, model_id: str, template: Callable[[], str | None] = lambda: None) -> Translated:
    """`template()`: the model's chat template, read when tools or thinking are asked for (proxy/ollama/tools.py).

    Raises: ProxyError invalid_request (a field of the wrong type, images, tools or thinking the model lacks).
    """
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "messages must be a list of {role, content}")
    _no_images(body)
    out = openai_messages([_message(m) for m in messages])
    return Translated("/v1/chat/completions", {"model": model_id, "messages": out, **_common(body),
                                               **chat_fields(body, template)}, _stream(body))


def generate_request(body: dict, model_id: str) -> Translated:
    """Raises: ProxyError invalid_request."""
    prompt, system = _text(body, "prompt"), _text(body, "system")
    _unsupported(body)
    if _text(body, "suffix"):  # fill-in-the-middle: the backend builds the FIM prompt, or says the model has none
        return Translated("/v1/completions", {"model": model_id, "prompt": prompt, "suffix": _text(body, "suffix"),
                                              **_common(body)}, _stream(body))
    if body.get("raw") is True:
        if system or _text(body, "template") or body.get("context"):
            raise ProxyError(ErrorCode.INVALID_REQUEST, "raw mode does not support template, system, or context")
        return Translated("/v1/completions", {"model": model_id, "prompt": prompt, **_common(body)}, _stream(body))
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return Translated("/v1/chat/completions", {"model": model_id, "messages": messages, **_common(body)},
                      _stream(body))


def embed_inputs(body: dict, field: str) -> list[str]:
    """`input` of /api/embed (a string or a list of strings) or `prompt` of /api/embeddings, as a list.

    Raises: ProxyError invalid_request ("invalid input type", as Ollama says).
    """
    value = body.get(field)
    if value is None:
        return []
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "invalid input type")
    return [item for item in value if item] if field == "prompt" else value


def keep_alive(body: dict) -> dict:
    """`keep_alive` as the backend takes it ({} when absent), checked by the backend's own rule
    (core.units.parse_keep_alive) so that a bad one is refused before anything is forwarded.

    Raises: ProxyError invalid_request (not a duration, a number of seconds, -1 or 0).
    """
    value = body.get("keep_alive")
    if value is None:
        return {}
    try:
        parse_keep_alive(value)
    except ValueError as err:
        raise ProxyError(ErrorCode.INVALID_REQUEST, str(err)) from err
    return {"keep_alive": value}


def _common(body: dict) -> dict:
    """Sampling options, output format and keep_alive, as the backend's fields."""
    return {**_options(body.get("options")), **_format(body.get("format")), **keep_alive(body),
            **context_options(body), "stream": _stream(body)}


def context_options(body: dict) -> dict:
    """`options.num_ctx` as the backend's `n_ctx` (the model is loaded, or reloaded when idle, with that context),
    and Ollama's `truncate` (true unless false: a prompt too long loses its oldest messages), as the backend's
    fields (docs/api.md, Ollama-compatible API).

    Raises: ProxyError invalid_request (num_ctx not a positive integer, truncate not a boolean).
    """
    options, out = body.get("options"), {}
    num_ctx = options.get("num_ctx") if isinstance(options, dict) else None
    if num_ctx is not None:
        if isinstance(num_ctx, bool) or not isinstance(num_ctx, int) or num_ctx < 1:
            raise ProxyError(ErrorCode.INVALID_REQUEST, "options.num_ctx must be a positive integer")
        out["n_ctx"] = num_ctx
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "truncate must be true or false")
    return {**out, "truncate": truncate}


def _options(options: Any) -> dict:
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "options must be an object such as {\"temperature\": 0.2}")
    out = {**OLLAMA_DEFAULTS, **{OPTIONS[k]: v for k, v in options.items() if k in OPTIONS and v is not None}}
    predict = out.get("max_tokens")
    if isinstance(predict, int) and not isinstance(predict, bool) and predict <= 0:
        # -1: until done, -2: until the context is full, 0: no limit (Ollama's runner limits only above 0);
        # all are ours without a limit (the backend refuses max_tokens 0, as OpenAI does)
        del out["max_tokens"]
    return out


def _format(value: Any) -> dict:
    if value in (None, ""):
        return {}
    if value == "json":
        return {"response_format": {"type": "json_object"}}
    if isinstance(value, dict):
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": value}}}
    raise ProxyError(ErrorCode.INVALID_REQUEST, 'format must be "json" or a JSON schema object')


def _stream(body: dict) -> bool:
    value = body.get("stream", True)
    if value is None:
        return True
    if not isinstance(value, bool):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "stream must be true or false")
    return value


def _text(body: dict, field: str) -> str:
    value = body.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProxyError(ErrorCode.INVALID_REQUEST, f"{field} must be a string")
    return value


def _message(message: Any) -> dict:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str) or \
            not isinstance(message.get("content") or "", str):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "each message must be {\"role\": string, \"content\": string}")
    if message.get("images"):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "images are not supported: the models served here take text only")
    return {**message, "role": message["role"].lower()}


def _no_images(body: dict) -> None:
    """Raises: ProxyError invalid_request for images: the models served here take text only."""
    if body.get("images"):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "images are not supported: the models served here take text only")


def _unsupported(body: dict) -> None:
    """Raises: ProxyError invalid_request for what generate cannot do, as Ollama words it for a model (chat takes
    tools and think: proxy/ollama/tools.py)."""
    model = body.get("model")
    _no_images(body)
    if body.get("tools"):
        raise ProxyError(ErrorCode.INVALID_REQUEST, f"{model!r} does not support tools")
    if body.get("think") not in (None, False):
        raise ProxyError(ErrorCode.INVALID_REQUEST, f"{model!r} does not support thinking")


def now_iso() -> str:
    """Ollama's `created_at`: RFC 3339, UTC."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def metrics(total_s: float, first_token_s: float | None, prompt_tokens: int, eval_tokens: int) -> dict:
    """Ollama's Metrics in nanoseconds: time to the first token counts as the prompt's evaluation (the
    backend reports no split), the rest as generation; an answer in one piece (`first_token_s` None) counts
    all as generation. Loading is inside the first token's time."""
    first = 0.0 if first_token_s is None else first_token_s
    return {"total_duration": int(total_s * NS), "load_duration": 0, "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": int(first * NS), "eval_count": eval_tokens,
            "eval_duration": int(max(0.0, total_s - first) * NS)}


def normalized(vector: list[float], dimensions: int | None = None) -> list[float]:
    """Ollama's /api/embed vectors: cut to `dimensions` when asked, then of unit length."""
    cut = vector[:dimensions] if dimensions else vector
    norm = math.sqrt(sum(x * x for x in cut))
    return [x / norm for x in cut] if norm else list(cut)
