"""What the translating dialects (Anthropic's Messages, OpenAI's Responses, Ollama's chat) check the one way: field
types, function tools in OpenAI chat's shape, and the backend's switch for reasoning."""
from __future__ import annotations

from typing import Any

from proxy.errors import ErrorCode, ProxyError

# Turns a thinking model's reasoning off, in the two ways OpenAI-compatible servers take it: `reasoning_effort`
# (OpenAI's field) and the template's `enable_thinking` (llama-server's chat_template_kwargs).
REASONING_OFF = {"reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": False}}
_NUMBER = (int, float)


def bad_request(message: str, param: str | None = None) -> ProxyError:
    """invalid_request, naming the field at fault (OpenAI's `param`) where one is."""
    return ProxyError(ErrorCode.INVALID_REQUEST, message, param=param)


def field_of(body: dict, name: str, types: tuple[type, ...], what: str, default: Any = None) -> Any:
    """`body[name]` when it is one of `types` (booleans are not numbers), `default` when absent or null.

    Raises: ProxyError invalid_request naming the field and what it must be.
    """
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise bad_request(f"{name} must be {what}", name)
    return value


def sampling_fields(body: dict, names: dict[str, str]) -> dict:
    """The numeric sampling fields of `body` named in `names` (theirs -> the backend's), type-checked.

    Raises: ProxyError invalid_request.
    """
    out = {}
    for theirs, ours in names.items():
        value = field_of(body, theirs, _NUMBER, "a number")
        if value is not None:
            if value < 0:
                raise bad_request(f"{theirs} must not be negative", theirs)
            out[ours] = value
    return out


def function_tool(name: Any, description: Any, parameters: Any) -> dict:
    """One tool in OpenAI chat's shape.

    Raises: ProxyError invalid_request (no name, parameters not a JSON schema object).
    """
    if not isinstance(name, str) or not name:
        raise bad_request("each tool needs a name", "tools")
    if parameters is None:
        parameters = {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise bad_request(f"tool {name!r}: its schema must be a JSON schema object", "tools")
    function = {"name": name, "parameters": parameters}
    if isinstance(description, str) and description:
        function["description"] = description
    return {"type": "function", "function": function}


def named_tool_choice(name: Any, tools: list[dict]) -> dict:
    """OpenAI chat's tool_choice forcing the tool `name`, which must be one of `tools`.

    Raises: ProxyError invalid_request.
    """
    if name not in {tool["function"]["name"] for tool in tools}:
        raise bad_request(f"tool_choice names the tool {name!r}, which is not among the request's tools",
                          "tool_choice")
    return {"type": "function", "function": {"name": name}}
