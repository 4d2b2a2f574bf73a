"""Reading JSON that a model is still writing: where an object ends, a string's text so far, and one tool call
`{"name": ..., "arguments": {...}}` with its arguments as the model wrote them."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

# A call whose name comes first, as the grammars write it (and most models do): the arguments can be streamed
# before the object closes. "parameters" is Llama 3's key.
_NAME_FIRST = re.compile(r'\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')
_WS = re.compile(r"\s*")


@dataclass(frozen=True)
class ScannedCall:
    """One call read from text: `arguments` as written (JSON text, maybe cut short while `complete` is False)
    and `end`, the index just past it."""

    name: str
    arguments: str
    complete: bool
    end: int


def object_end(text: str, start: int) -> int | None:
    """The index just past the JSON value (object or array) opening at `start`, or None if it is not closed yet."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        char = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def string_so_far(text: str, start: int) -> tuple[str, int | None]:
    """The decoded text of the JSON string whose opening quote is at `start`, as far as it goes, and the index
    just past its closing quote (None while open). An escape cut short is left out until it completes."""
    i, parts = start + 1, []
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(parts), i + 1
        if char != "\\":
            parts.append(char)
            i += 1
            continue
        escape = text[i:i + 6] if text[i + 1:i + 2] == "u" else text[i:i + 2]
        if len(escape) < (6 if escape[1:2] == "u" else 2):
            break
        try:
            parts.append(json.loads(f'"{escape}"'))
        except ValueError:
            parts.append(escape)  # a lone surrogate half or a bad escape: kept as written
        i += len(escape)
    return "".join(parts), None


def scan_call(text: str, start: int) -> ScannedCall | None:
    """The call whose object opens at `start` (whitespace before it skipped), or None while its name is not
    known yet or when the text there is not a call."""
    start = _WS.match(text, start).end()
    match = _NAME_FIRST.match(text, start)
    if match is not None:
        name, _ = string_so_far(text, match.start(1) - 1)
        args_start = match.end()
        if args_start >= len(text):
            return ScannedCall(name, "", False, len(text))
        if text[args_start] == '"':  # arguments written as a JSON string of JSON
            decoded, end = string_so_far(text, args_start)
            return None if end is None else _closing(text, name, decoded, end)
        end = object_end(text, args_start)
        if end is None:
            return ScannedCall(name, text[args_start:], False, len(text))
        return _closing(text, name, text[args_start:end], end)
    end = object_end(text, start) if text[start:start + 1] == "{" else None
    if end is None:
        return None
    try:  # another key order, or extra keys: only as a whole object
        value = json.loads(text[start:end])
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    return ScannedCall(value["name"], arguments if isinstance(arguments, str) else json.dumps(arguments), True, end)


def _closing(text: str, name: str, arguments: str, args_end: int) -> ScannedCall:
    """The call once its arguments are read: complete when the outer object closes too (other keys, such as
    Mistral's `id`, may come first)."""
    rest = text[args_end:]
    stripped = rest.lstrip()
    if stripped.startswith("}"):
        return ScannedCall(name, arguments, True, len(text) - len(stripped) + 1)
    if stripped.startswith(","):
        end = object_end("{" + stripped[1:], 0)
        if end is not None:
            return ScannedCall(name, arguments, True, len(text) - len(stripped) + end)
    return ScannedCall(name, arguments, False, len(text))


def parses(arguments: str) -> bool:
    """Whether `arguments` is one JSON object."""
    try:
        return isinstance(json.loads(arguments), dict)
    except ValueError:
        return False
