"""OpenAI's `tools`, `tool_choice` and `parallel_tool_calls`: checked into a `ToolUse`, and the grammar that
makes a model's calls parse and validate against the tools' JSON schemas (docs/api.md, Agents)."""
from __future__ import annotations

import json
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

from ..engine.sampling import _schema_grammar  # response_format's converter: one path from schema to grammar
from ..errors import InvalidRequest
from . import function_gemma
from .tool_formats import ToolFormat

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_CHOICES = ("auto", "none", "required")
_ID_CHARS = string.ascii_letters + string.digits


@dataclass(frozen=True)
class ToolUse:
    """The request's tools (OpenAI's `{"type": "function", "function": {...}}`) and what it asks of them."""

    tools: tuple[dict, ...]
    choice: str = "auto"  # "auto", "none", "required", or "function" for `function` by name
    function: str | None = None
    parallel: bool = True

    @property
    def calls_allowed(self) -> bool:
        return self.choice != "none"

    @property
    def forced(self) -> bool:
        return self.choice in ("required", "function")

    def offered(self) -> list[dict]:
        """The tools the model may call: the named one alone when tool_choice names one."""
        return [tool for tool in self.tools if self.function is None or tool["function"]["name"] == self.function]


def parse_tool_use(body: dict) -> ToolUse | None:
    """The body's tools and tool_choice, or None when it has no tools.

    Raises:
        InvalidRequest: a tool or the tool_choice is not OpenAI's shape, or names a tool not given.
    """
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools is None or tools == []:
        if choice not in (None, "none", "auto"):
            raise InvalidRequest("`tool_choice` asks for a call but the request has no `tools`", param="tool_choice")
        return None
    if not isinstance(tools, list):
        raise InvalidRequest("`tools` must be a list of {\"type\": \"function\", \"function\": {...}}", param="tools")
    checked = tuple(_tool(tool, i) for i, tool in enumerate(tools))
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise InvalidRequest("`parallel_tool_calls` must be true or false", param="parallel_tool_calls")
    kind, function = _choice(choice, {tool["function"]["name"] for tool in checked})
    return ToolUse(checked, kind, function, parallel)


def _tool(tool: Any, index: int) -> dict:
    where = f"tools[{index}]"
    if not isinstance(tool, dict) or tool.get("type", "function") != "function" or \
            not isinstance(tool.get("function"), dict):
        raise InvalidRequest(f"`{where}` must be {{\"type\": \"function\", \"function\": {{\"name\", "
                             f"\"parameters\"?}}}}", param="tools")
    function = tool["function"]
    name = function.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(f"`{where}.function.name` must be 1 to 64 letters, digits, _ . : or -", param="tools")
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict):
        raise InvalidRequest(f"`{where}.function.parameters` must be a JSON Schema object", param="tools")
    try:  # before any model loads: a schema that gives no grammar is the request's fault
        _schema_grammar(parameters, f"{where}.function.parameters")
    except InvalidRequest as err:
        raise InvalidRequest(err.message, param="tools") from err
    description = function.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidRequest(f"`{where}.function.description` must be a string", param="tools")
    clean = {"name": name, "parameters": parameters}
    if description:
        clean["description"] = description
    return {"type": "function", "function": clean}


def _choice(choice: Any, names: set[str]) -> tuple[str, str | None]:
    if choice is None:
        return "auto", None
    if isinstance(choice, str) and choice in _CHOICES:
        return choice, None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if name not in names:
            raise InvalidRequest(f"`tool_choice` names the function {name!r}, which is not in `tools`",
                                 param="tool_choice")
        return "function", name
    raise InvalidRequest('`tool_choice` must be "auto", "none", "required" or {"type": "function", "function": '
                         '{"name": ...}}', param="tool_choice")


def tool_grammar(tool_format: ToolFormat, use: ToolUse) -> str:
    """GBNF for the model's answer: calls in `tool_format`'s syntax with arguments valid for each tool's schema,
    or, for the generic format under "auto", a choice between calls and `{"response": "..."}`.

    Raises:
        InvalidRequest: a tool's parameters cannot be turned into a grammar (names the tool).
    """
    if tool_format.name == "functiongemma":  # not JSON: its own converter
        return function_gemma.call_grammar([tool["function"] for tool in use.offered()], use.parallel)
    calls = [_call_schema(tool["function"], tool_format.args_key) for tool in use.offered()]
    call = calls[0] if len(calls) == 1 else {"anyOf": calls}
    try:
        if tool_format.name == "generic":
            return _schema_grammar(_generic_schema(call, use), "tools[].function.parameters")
        grammar = _schema_grammar(call, "tools[].function.parameters")
    except InvalidRequest as err:  # the converter's message names the part; the field at fault is `tools`
        raise InvalidRequest(err.message, param="tools") from err
    return re.sub(r"^root ::=", "call ::=", grammar, count=1, flags=re.M) + "\n" + \
        tool_format.root_rule(use.parallel) + "\n"


def _call_schema(function: dict, args_key: str) -> dict:
    return {"type": "object", "properties": {"name": {"const": function["name"]}, args_key: function["parameters"]},
            "required": ["name", args_key]}


def _generic_schema(call: dict, use: ToolUse) -> dict:
    """llama-server's generic answer: `{"tool_call": call}` (or `{"tool_calls": [...]}` when parallel), or
    `{"response": text}` unless a call is required."""
    if use.parallel:
        calls = {"type": "object", "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1}},
                 "required": ["tool_calls"]}
    else:
        calls = {"type": "object", "properties": {"tool_call": call}, "required": ["tool_call"]}
    if use.forced:
        return calls
    answer = {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]}
    return {"anyOf": [calls, answer]}


def new_call_id(length: int = 24) -> str:
    """A call id: `call_` and random alphanumerics, or exactly `length` of them when a template insists (9)."""
    body = "".join(secrets.choice(_ID_CHARS) for _ in range(length))
    return body if length < 24 else f"call_{body}"


def described(tools: list[dict]) -> str:
    """The tools for a system message, for templates that do not render tools (llama-server's generic format)."""
    return ("You can call any of the following tools to satisfy the user's requests: "
            + json.dumps([tool["function"] for tool in tools], ensure_ascii=False, indent=2)
            + "\n\nRespond in JSON format, either with `tool_call` (a request to call tools) or with `response` "
            "(a reply to the user's request).")
