"""Anthropic's Messages request (POST /v1/messages, /v1/messages/count_tokens) as the backend's OpenAI chat body:
`system`, `messages` with text, `tool_use` and `tool_result` blocks, `tools`, `tool_choice`, sampling fields."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from proxy.backend.chat import backend_model
from proxy.backend.dialect import (REASONING_OFF, bad_request, field_of, function_tool, named_tool_choice,
                                   sampling_fields)

SAMPLING = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k"}
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
NO_IMAGES = "content blocks of type {!r} are not supported: the models served here take text only"


@dataclass(frozen=True)
class MessagesRequest:
    """A Messages request made ready: the backend's chat body and what the answer must say."""

    model: str  # as the client named it: the answer says it back
    body: dict  # OpenAI chat, the backend's model id in it
    files: list[str]  # the installed files the model is
    stream: bool
    stop_sequences: tuple[str, ...]


def messages_request(body: Any, counting: bool = False) -> MessagesRequest:
    """Raises: ProxyError invalid_request (a missing or malformed field, images), model_not_found."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    model_id, files = backend_model(body.get("model"))
    chat: dict[str, Any] = {"model": model_id, "messages": chat_messages(body)}
    if not counting:
        max_tokens = field_of(body, "max_tokens", (int,), "a positive integer")
        if max_tokens is None or max_tokens < 1:
            raise bad_request("max_tokens is required: a positive integer")
        chat.update(max_tokens=max_tokens, **sampling_fields(body, SAMPLING))
    chat.update(_tools(body), **_output_config(body))
    if isinstance(body.get("thinking"), dict) and body["thinking"].get("type") == "disabled":
        chat.update(REASONING_OFF)
    stops = field_of(body, "stop_sequences", (list,), "a list of strings", [])
    if not all(isinstance(stop, str) and stop for stop in stops):
        raise bad_request("stop_sequences must be a list of non-empty strings")
    stream = field_of(body, "stream", (bool,), "true or false", False)
    return MessagesRequest(body["model"], chat, files, stream, tuple(stops))


def chat_messages(body: dict) -> list[dict]:
    """`system` and `messages` as OpenAI chat messages; a user turn's tool results become `tool` messages.

    Raises: ProxyError invalid_request.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list of {role, content}")
    system = _system(body.get("system"))
    out = [{"role": "system", "content": system}] if system else []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise bad_request('each message must be {"role": "user" or "assistant", "content": ...}')
        out += _assistant(message.get("content")) if message["role"] == "assistant" else _user(message.get("content"))
    return out


def _system(system: Any) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n\n".join(_text(block) for block in _blocks(system, "system"))


def _user(content: Any) -> list[dict]:
    """Tool results first (they answer the turn before), then the user's own text."""
    blocks = _blocks(content, "content")
    results = [{"role": "tool", "tool_call_id": str(block.get("tool_use_id") or ""),
                "content": _result_text(block)} for block in blocks if block.get("type") == "tool_result"]
    texts = [_text(block) for block in blocks if block.get("type") != "tool_result"]
    return results + ([{"role": "user", "content": "\n\n".join(texts)}] if texts or not results else [])


def _assistant(content: Any) -> list[dict]:
    blocks = _blocks(content, "content")
    calls = [_tool_use(block) for block in blocks if block.get("type") == "tool_use"]
    texts = [_text(block) for block in blocks if block.get("type") not in ("tool_use", "thinking", "redacted_thinking")]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
    return [message]


def _blocks(content: Any, where: str) -> list[dict]:
    """Content as a list of blocks: a string is one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(block, dict) for block in content):
        raise bad_request(f"{where} must be a string or a list of content blocks")
    return content


def _text(block: dict) -> str:
    if block.get("type") != "text":
        raise bad_request(NO_IMAGES.format(block.get("type")))
    if not isinstance(block.get("text"), str):
        raise bad_request("a text block needs its text")
    return block["text"]


def _result_text(block: dict) -> str:
    content = block.get("content")
    text = "" if content is None else content if isinstance(content, str) else \
        "\n\n".join(_text(part) for part in _blocks(content, "tool_result content"))
    return f"Error: {text}" if block.get("is_error") else text


def _tool_use(block: dict) -> dict:
    if not isinstance(block.get("name"), str) or not isinstance(block.get("input", {}), dict):
        raise bad_request("a tool_use block needs its name and an input object")
    arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
    return {"id": str(block.get("id") or ""), "type": "function",
            "function": {"name": block["name"], "arguments": arguments}}


def _output_config(body: dict) -> dict:
    """`output_config`: a JSON schema the answer must follow (`format`) as chat's response_format, and `effort` as
    its reasoning_effort (the levels above OpenAI's "high" are "high").

    Raises: ProxyError invalid_request (a format other than a json_schema with its schema).
    """
    config = field_of(body, "output_config", (dict,), "an object", {})
    out: dict[str, Any] = {}
    fmt = config.get("format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise bad_request('output_config.format must be {"type": "json_schema", "schema": {...}}')
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    if config.get("effort") in EFFORTS:
        out["reasoning_effort"] = EFFORTS[config["effort"]]
    return out


def _tools(body: dict) -> dict:
    """`tools` and `tool_choice` in OpenAI chat's shape ({} without tools).

    Raises: ProxyError invalid_request (a server tool, a choice naming no tool of the request).
    """
    tools = field_of(body, "tools", (list,), "a list of tools", [])
    out: list[dict] = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise bad_request(f"tools of type {kind!r} are not supported: only client tools (name, input_schema)")
        out.append(function_tool(tool.get("name"), tool.get("description"), tool.get("input_schema")))
    choice = field_of(body, "tool_choice", (dict,), 'an object such as {"type": "auto"}', {"type": "auto"})
    if not out:
        return {}
    kind = choice.get("type")
    if kind == "tool":
        chosen: Any = named_tool_choice(choice.get("name"), out)
    elif kind in TOOL_CHOICES:
        chosen = TOOL_CHOICES[kind]
    else:
        raise bad_request('tool_choice.type must be "auto", "any", "tool" or "none"')
    parallel = {"parallel_tool_calls": False} if choice.get("disable_parallel_tool_use") else {}
    return {"tools": out, "tool_choice": chosen, **parallel}
