"""Ollama's `/api/chat` tools and thinking as the backend's OpenAI chat fields, and back: `tools` in (OpenAI's
shape already), `message.tool_calls` with `arguments` as objects out, `think` (true, false or a level) in and
`message.thinking` out. A model whose chat template shows no tools (or no thinking) is refused as Ollama refuses
it: 400 "<model> does not support tools"."""
from __future__ import annotations

import json
from typing import Any, Callable

from core.gguf_check import InvalidGGUF, scan_gguf_header
from proxy.backend.chat import ToolCall
from proxy.backend.dialect import REASONING_OFF
from proxy.errors import ErrorCode, ProxyError
from proxy.models_dir.store import ModelStore

THINK_LEVELS = ("high", "medium", "low")
# What a template's text says the model can do (Ollama reads its Go templates' variables; these are the Jinja
# templates' words for the same: a tools list, a thinking switch or reasoning block).
TOOLS_MARKERS = ("tools", ".Tools")
THINKING_MARKERS = ("enable_thinking", "<think>", "reasoning_content", ".Thinking")


def chat_template(store: ModelStore, files: list[str]) -> str | None:
    """The chat template in the model's GGUF header (`tokenizer.chat_template`); None without one."""
    if not files:
        return None
    try:
        template = scan_gguf_header(store.final_path(files[0])).metadata.get("tokenizer.chat_template")
    except (InvalidGGUF, OSError):
        return None
    return template if isinstance(template, str) else None


def template_takes_tools(template: str | None) -> bool:
    """Whether a chat template renders tools (Ollama's `tools` capability, and what /api/chat's tools need)."""
    return bool(template) and any(marker in template for marker in TOOLS_MARKERS)


def template_thinks(template: str | None) -> bool:
    """Whether a chat template knows of thinking (Ollama's `thinking` capability, and what `think` needs)."""
    return bool(template) and any(marker in template for marker in THINKING_MARKERS)


def chat_fields(body: dict, template: Callable[[], str | None]) -> dict:
    """`tools` and `think` as the backend's fields; `template()` is the model's chat template, read only when asked.

    Raises: ProxyError invalid_request (tools not a list of function tools, a model without tools or thinking).
    """
    out: dict[str, Any] = {}
    model, tools, think = body.get("model"), body.get("tools"), body.get("think")
    if tools:
        if not isinstance(tools, list) or not all(isinstance(t, dict) and t.get("type", "function") == "function"
                                                  for t in tools):
            raise ProxyError(ErrorCode.INVALID_REQUEST, "tools must be a list of {type: function, function: {...}}")
        if not template_takes_tools(template()):
            raise ProxyError(ErrorCode.INVALID_REQUEST, f"{model!r} does not support tools")
        out["tools"] = [{"type": "function", **tool} for tool in tools]
    if think is False:
        out.update(REASONING_OFF)
    elif think is not None:
        if think is not True and think not in THINK_LEVELS:
            raise ProxyError(ErrorCode.INVALID_REQUEST, 'think must be true, false, "high", "medium" or "low"')
        if not template_thinks(template()):
            raise ProxyError(ErrorCode.INVALID_REQUEST, f"{model!r} does not support thinking")
        out.update({} if think is True else {"reasoning_effort": think})
    return out


def openai_messages(messages: list[dict]) -> list[dict]:
    """Ollama's chat messages (checked) as OpenAI's: an assistant's `tool_calls` with arguments as JSON strings and
    ids, a `tool` message answering the call it follows (by `tool_call_id`, or the next of the turn's calls)."""
    out, pending = [], []
    for message in messages:
        converted = {"role": message["role"], "content": message.get("content") or ""}
        calls = message.get("tool_calls")
        if message["role"] == "assistant" and isinstance(calls, list) and calls:
            converted["tool_calls"] = [_openai_call(call, n) for n, call in enumerate(calls)]
            pending = [call["id"] for call in converted["tool_calls"]]
        elif message["role"] == "tool":
            converted["tool_call_id"] = message.get("tool_call_id") or (pending.pop(0) if pending else "call_0")
        out.append(converted)
    return out


def ollama_tool_calls(calls: list[ToolCall]) -> list[dict]:
    """The backend's calls in Ollama's shape: `function.arguments` an object."""
    return [{"id": call.id, "function": {"index": n, "name": call.name, "arguments": call.parsed_arguments()}}
            for n, call in enumerate(calls)]


def _openai_call(call: Any, n: int) -> dict:
    """Raises: ProxyError invalid_request (not {function: {name, arguments}})."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "each tool call must be {function: {name, arguments}}")
    arguments = function.get("arguments") or {}
    text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
    return {"id": call.get("id") or f"call_{n}", "type": "function",
            "function": {"name": function["name"], "arguments": text}}


def message_extras(message: Any) -> dict:
    """An OpenAI chat answer's `reasoning_content` and `tool_calls` as Ollama's `thinking` and `tool_calls`."""
    if not isinstance(message, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(message.get("reasoning_content"), str) and message["reasoning_content"]:
        out["thinking"] = message["reasoning_content"]
    calls = [call.get("function") for call in message.get("tool_calls") or [] if isinstance(call, dict)]
    found = [ToolCall("", str(f.get("name") or ""), str(f.get("arguments") or "")) for f in calls
             if isinstance(f, dict)]
    if found:
        out["tool_calls"] = ollama_tool_calls(found)
    return out
