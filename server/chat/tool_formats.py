"""Tool-call formats per model family: how a family's model writes calls (parsed back into calls, also from a
text that is still being written) and the grammar that makes it write them validly.

Chosen from the chat template (`format_for_template`), as llama-server's --jinja does: Qwen/Hermes
`<tool_call>{...}</tool_call>`, Llama 3.x JSON (`{"name", "parameters"}`, after `<|python_tag|>` or alone),
Mistral `[TOOL_CALLS][{...}]`, FunctionGemma `<start_function_call>call:NAME{...}` (server.chat.function_gemma), and
the generic JSON answer (`{"tool_call": ...}` or `{"response": ...}`) for templates that know no tools (docs/api.md,
Tools and reasoning).
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Callable

from . import function_gemma
from .jsonscan import ScannedCall, scan_call, string_so_far

_WS = re.compile(r"\s*")


@dataclass(frozen=True)
class Parsed:
    """What a model wrote: its text for the user and its calls (the last maybe incomplete while streaming)."""

    content: str
    calls: tuple[ScannedCall, ...] = ()


@dataclass(frozen=True)
class ToolFormat:
    """One family's call syntax."""

    name: str
    opener: str  # what opens the calls; "" for formats whose whole answer is JSON
    args_key: str = "arguments"
    id_length: int = 24  # Mistral's templates insist on 9 alphanumerics

    def triggers(self, token_of: Callable[[str], int | None]) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """llama.cpp's lazy-grammar triggers: regexes matched on the whole text so far (whose first group opens
        the constrained part), and tokens; the opener is a token when one token spells it (`token_of`)."""
        patterns = [r"\s*(\{\s*\"name\")[\s\S]*"] if self.name == "llama3" else []
        token = token_of(self.opener) if self.opener else None
        if token is not None:
            return tuple(patterns), (token,)
        if self.opener:
            patterns.append(rf"[\s\S]*?({re.escape(self.opener)})[\s\S]*")
        return tuple(patterns), ()

    def root_rule(self, parallel: bool) -> str:
        """The GBNF root around the rule `call` (one call object); the generic format's grammar is its schema's."""
        if self.name == "hermes":
            # Whitespace around the object as models write it: the token that opens a lazy grammar may carry some.
            one = '"<tool_call>" [ \\t\\n]{0,3} call [ \\t\\n]{0,3} "</tool_call>"'
            return f"root ::= {one} ( \"\\n\" {one} )*" if parallel else f"root ::= {one}"
        if self.name == "mistral":
            more = ' ( "," " "? call )*' if parallel else ""
            return f'root ::= "[TOOL_CALLS]" [ \\n]{{0,2}} "[" call{more} "]"'
        if self.name == "llama3":
            more = ' ( ";" " "? call )*' if parallel else ""
            return f'root ::= ( "<|python_tag|>" )? call{more}'
        return ""

    def parse(self, text: str, partial: bool = False) -> Parsed:
        """The content and calls of `text`; `partial`: the model is still writing, so what may be the start of
        a call is held back from the content."""
        if self.name == "generic":
            return _parse_generic(text, partial)
        if self.name == "llama3":
            return _parse_llama3(text, partial)
        if self.name == "functiongemma":
            return _parse_function_gemma(text, partial)
        return _parse_opened(text, partial, self.opener, "</tool_call>" if self.name == "hermes" else "",
                             in_array=self.name == "mistral")


FORMATS = {
    "hermes": ToolFormat("hermes", "<tool_call>"),
    "llama3": ToolFormat("llama3", "<|python_tag|>", args_key="parameters"),
    "mistral": ToolFormat("mistral", "[TOOL_CALLS]", id_length=9),
    "functiongemma": ToolFormat("functiongemma", function_gemma.OPEN),
    "generic": ToolFormat("generic", ""),
}


def format_for_template(template: str | None) -> ToolFormat:
    """The call syntax a chat template teaches its model; generic for a template without tools (or none)."""
    if not template or "tools" not in template:
        return FORMATS["generic"]
    if function_gemma.OPEN in template:
        return FORMATS["functiongemma"]
    if "<tool_call>" in template:
        return FORMATS["hermes"]
    if "[TOOL_CALLS]" in template:
        return FORMATS["mistral"]
    if "<|python_tag|>" in template or "<|start_header_id|>" in template:
        return FORMATS["llama3"]
    return FORMATS["generic"]


def template_takes_tools(template: str | None, tool_format: ToolFormat) -> bool:
    """Whether the template renders `tools` itself (else they are described in a system message)."""
    return bool(template) and "tools" in template and tool_format.name != "generic"


def held_back(text: str, opener: str) -> int:
    """How many characters at the end of `text` may be the start of `opener` (not yet shown as content)."""
    for n in range(min(len(opener) - 1, len(text)), 0, -1):
        if opener.startswith(text[-n:]):
            return n
    return 0


def _parse_opened(text: str, partial: bool, opener: str, closer: str, in_array: bool) -> Parsed:
    """Calls after `opener` (each closed by `closer`, or all in one JSON array); the text before is content."""
    at = text.find(opener)
    if at < 0:
        return Parsed(text[:len(text) - held_back(text, opener)] if partial else text)
    content, pos, calls = text[:at], at + len(opener), []
    if in_array:
        pos = _WS.match(text, pos).end()
        if text[pos:pos + 1] != "[":
            return Parsed(content if partial else text)
        pos += 1
    while True:
        call = scan_call(text, pos)
        if call is None:
            break
        calls.append(call)
        pos = _WS.match(text, call.end).end()
        if not call.complete:
            break
        if closer and text.startswith(closer, pos):
            pos = _WS.match(text, pos + len(closer)).end()
        if in_array and text[pos:pos + 1] == ",":
            pos += 1
        elif not in_array and text.startswith(opener, pos):
            pos += len(opener)
        else:
            break
    if not calls and not partial:
        return Parsed(text)
    return Parsed(content, tuple(calls))


def _parse_llama3(text: str, partial: bool) -> Parsed:
    """`<|python_tag|>` then calls separated by `;`, or an answer that is one call object alone."""
    tag = "<|python_tag|>"
    stripped = text.lstrip()
    if tag in text or not stripped.startswith("{"):
        if partial and (not stripped or tag.startswith(stripped)):
            return Parsed("")
        parsed = _parse_opened(text, partial, tag, "", in_array=False)
        return _semicolons(text, parsed, partial)
    call = scan_call(text, 0)
    if call is None or (not partial and not call.complete):
        return Parsed("" if partial else text)
    return Parsed("", (call,))


def _semicolons(text: str, parsed: Parsed, partial: bool) -> Parsed:
    """Llama's calls after the tag separated by `;`: read the calls that follow each separator too."""
    if not parsed.calls or not parsed.calls[-1].complete:
        return parsed
    calls, pos = list(parsed.calls), parsed.calls[-1].end
    while True:
        pos = _WS.match(text, pos).end()
        if text[pos:pos + 1] != ";":
            return Parsed(parsed.content, tuple(calls))
        call = scan_call(text, pos + 1)
        if call is None:
            return Parsed(parsed.content, tuple(calls))
        calls.append(call)
        if not call.complete:
            return Parsed(parsed.content, tuple(calls))
        pos = call.end


def _parse_function_gemma(text: str, partial: bool) -> Parsed:
    at = text.find(function_gemma.OPEN)
    if at < 0:
        return Parsed(text[:len(text) - held_back(text, function_gemma.OPEN)] if partial else text)
    calls = function_gemma.scan_calls(text, at)
    if not calls and not partial:
        return Parsed(text)
    return Parsed(text[:at], tuple(calls))


_GENERIC_KEY = re.compile(r'\s*\{\s*"(response|tool_calls|tool_call)"\s*:\s*')


def _parse_generic(text: str, partial: bool) -> Parsed:
    """`{"response": "..."}`, `{"tool_call": {...}}` or `{"tool_calls": [{...}, ...]}` (llama-server's generic
    format); any other text is content as it is."""
    match = _GENERIC_KEY.match(text)
    if match is None:
        if partial and (not text.strip() or text.lstrip().startswith("{")):
            return Parsed("")  # a key not yet written
        return Parsed(text)
    pos = match.end()
    if match.group(1) == "response":
        if text[pos:pos + 1] != '"':
            return Parsed("" if partial else text)
        return Parsed(string_so_far(text, pos)[0])  # cut short by max_tokens: the text it had written
    calls: list[ScannedCall] = []
    if match.group(1) == "tool_calls":
        pos = _WS.match(text, pos).end() + (text[pos:pos + 1] == "[")
    while True:
        call = scan_call(text, pos)
        if call is None:
            break
        calls.append(call)
        if not call.complete or match.group(1) == "tool_call":
            break
        pos = _WS.match(text, call.end).end()
        if text[pos:pos + 1] != ",":
            break
        pos += 1
    if not calls and not partial:
        return Parsed(text)
    return Parsed("", tuple(calls))


def format_override(spec: str, model_id: str) -> str | None:
    """The format TOOL_FORMATS names for `model_id` (comma-separated `GLOB=FORMAT`, the first glob matching the
    model id wins), or None to choose from the template.

    Raises:
        ValueError: an entry is not GLOB=FORMAT or names no known format.
    """
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        pattern, _, name = entry.rpartition("=")
        if not pattern or name not in FORMATS:
            raise ValueError(f"TOOL_FORMATS entry {entry!r} must be GLOB=FORMAT, FORMAT one of {', '.join(FORMATS)}")
        if fnmatch.fnmatchcase(model_id, pattern):
            return name
    return None
