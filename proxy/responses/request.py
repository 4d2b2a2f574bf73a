"""OpenAI's Responses request (POST /v1/responses) as the backend's OpenAI chat body: `input` as text or items
(messages, `function_call`, `function_call_output`), `instructions`, `max_output_tokens`, function `tools`,
`tool_choice`, `text.format`. Stateless: nothing is stored, so what would need a stored response is refused."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.backend.chat import backend_model
from proxy.backend.dialect import bad_request, field_of, function_tool, named_tool_choice, sampling_fields

SAMPLING = {"temperature": "temperature", "top_p": "top_p"}
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = ("input_text", "output_text", "text", "refusal")
SKIPPED_ITEMS = ("reasoning",)  # the model's earlier reasoning: the chat template leaves it out anyway
# Fields that need a stored response or run in the background: this server keeps none (stateless).
STATEFUL = {"previous_response_id": "no responses are stored here; send the whole conversation in input",
            "conversation": "no conversations are stored here; send the whole conversation in input",
            "background": "responses are not run in the background here; leave background out"}


@dataclass(frozen=True)
class ResponsesRequest:
    model: str  # as the client named it
    body: dict  # OpenAI chat for the backend
    files: list[str]
    stream: bool
    echoed: dict  # the request's settings, as the response object repeats them


def responses_request(body: Any) -> ResponsesRequest:
    """Raises: ProxyError invalid_request (naming the field), ProxyError model_not_found."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    _refuse_stateful(body)
    model_id, files = backend_model(body.get("model"))
    chat: dict[str, Any] = {"model": model_id, "messages": chat_messages(body), **sampling_fields(body, SAMPLING)}
    max_tokens = field_of(body, "max_output_tokens", (int,), "a positive integer")
    if max_tokens is not None:
        if max_tokens < 1:
            raise bad_request("max_output_tokens must be a positive integer", "max_output_tokens")
        chat["max_tokens"] = max_tokens
    chat.update(_tools(body), **_text_format(body.get("text")))
    effort = body.get("reasoning", {}).get("effort") if isinstance(body.get("reasoning"), dict) else None
    if isinstance(effort, str):
        chat["reasoning_effort"] = effort
    stream = field_of(body, "stream", (bool,), "true or false", False)
    echoed = {name: body.get(name) for name in ("instructions", "max_output_tokens", "temperature", "top_p")}
    echoed.update(tools=body.get("tools") or [], tool_choice=body.get("tool_choice") or "auto",
                  parallel_tool_calls=body.get("parallel_tool_calls") is not False,
                  metadata=body.get("metadata") or {}, text=body.get("text") or {"format": {"type": "text"}})
    return ResponsesRequest(body["model"], chat, files, stream, echoed)


def chat_messages(body: dict) -> list[dict]:
    """`instructions` and `input` as OpenAI chat messages.

    Raises: ProxyError invalid_request.
    """
    instructions = field_of(body, "instructions", (str,), "a string")
    out = [{"role": "system", "content": instructions}] if instructions else []
    given = body.get("input")
    if isinstance(given, str):
        return out + [{"role": "user", "content": given}]
    if not isinstance(given, list) or not given:
        raise bad_request("input must be a string or a non-empty list of items", "input")
    for item in given:
        if not isinstance(item, dict):
            raise bad_request("each input item must be an object", "input")
        _add_item(out, item)
    return out


def _add_item(out: list[dict], item: dict) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = ROLES.get(item.get("role"))
        if role is None:
            raise bad_request('a message item\'s role must be "user", "assistant", "system" or "developer"', "input")
        out.append({"role": role, "content": _content(item.get("content"))})
    elif kind == "function_call":
        call = {"id": str(item.get("call_id") or item.get("id") or ""), "type": "function",
                "function": {"name": str(item.get("name") or ""), "arguments": str(item.get("arguments") or "{}")}}
        if not (out and out[-1]["role"] == "assistant"):
            out.append({"role": "assistant", "content": ""})
        out[-1].setdefault("tool_calls", []).append(call)  # calls made together are one assistant turn
    elif kind == "function_call_output":
        out.append({"role": "tool", "tool_call_id": str(item.get("call_id") or ""),
                    "content": _content(item.get("output"))})
    elif kind not in SKIPPED_ITEMS:
        raise bad_request(f"input items of type {kind!r} are not supported here", "input")


def _content(content: Any) -> str:
    """A message's content, a string or a list of text parts, as one string.

    Raises: ProxyError invalid_request (images, files, audio).
    """
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise bad_request("content must be a string or a list of parts", "input")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS or not isinstance(part.get("text", part.get("refusal")), str):
            raise bad_request(f"content parts of type {kind!r} are not supported: the models served here take "
                              "text only", "input")
        texts.append(part.get("text", part.get("refusal")))
    return "".join(texts)


def _tools(body: dict) -> dict:
    """Function tools and tool_choice in OpenAI chat's shape ({} without tools).

    Raises: ProxyError invalid_request (a built-in tool such as web_search, a choice naming no tool).
    """
    tools = field_of(body, "tools", (list,), "a list of tools", [])
    out = []
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else tool
            raise bad_request(f"tools of type {kind!r} are not supported here: only function tools", "tools")
        out.append(function_tool(tool.get("name"), tool.get("description"), tool.get("parameters")))
    if not out:
        return {}
    choice = body.get("tool_choice") or "auto"
    if isinstance(choice, dict) and choice.get("type") == "function":
        choice = named_tool_choice(choice.get("name"), out)
    elif choice not in ("auto", "none", "required"):
        raise bad_request('tool_choice must be "auto", "none", "required" or {"type": "function", "name"}',
                          "tool_choice")
    parallel = {"parallel_tool_calls": False} if body.get("parallel_tool_calls") is False else {}
    return {"tools": out, "tool_choice": choice, **parallel}


def _text_format(text: Any) -> dict:
    """`text.format` as chat's response_format: JSON mode or a JSON schema.

    Raises: ProxyError invalid_request.
    """
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in (None, "text"):
        return {}
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if kind == "json_schema" and isinstance(fmt.get("schema"), dict):
        schema = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    raise bad_request('text.format must be {"type": "text"}, {"type": "json_object"} or a json_schema with its '
                      "schema", "text")


def _refuse_stateful(body: dict) -> None:
    """Raises: ProxyError invalid_request for a field this stateless server cannot honour."""
    for name, why in STATEFUL.items():
        if body.get(name) not in (None, False, ""):
            raise bad_request(f"{name} is not supported: {why}", name)
    if body.get("store") is True:
        raise bad_request("store: true is not supported: no responses are stored here; send store: false or "
                          "leave it out", "store")
