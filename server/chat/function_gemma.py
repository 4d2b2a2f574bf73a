"""FunctionGemma's call syntax: `<start_function_call>call:NAME{key:value,...}<end_function_call>`, strings between
`<escape>` marks, numbers, booleans, objects and lists bare. Read into JSON arguments, and the GBNF that writes it
valid for a tool's JSON schema (the JSON converter cannot: the syntax is not JSON)."""
from __future__ import annotations

import json
import re
from typing import Any

from .jsonscan import ScannedCall

OPEN, CLOSE, ESCAPE = "<start_function_call>", "<end_function_call>", "<escape>"
_NAME = re.compile(r"call:([A-Za-z0-9_.:-]+)\{")
_BARE = re.compile(r"[^,}\]]*")
# The rules every grammar shares: a string's text (no <escape> inside), numbers, and any value of an object
# the schema leaves open.
COMMON_RULES = r'''fg-string ::= "<escape>" ( [^<] | "<" [^e] )* "<escape>"
fg-number ::= "-"? [0-9]+ ( "." [0-9]+ )?
fg-integer ::= "-"? [0-9]+
fg-boolean ::= "true" | "false"
fg-key ::= [A-Za-z_] [A-Za-z0-9_]*
fg-value ::= fg-string | fg-number | fg-boolean | "null" | fg-object | fg-list
fg-object ::= "{" ( fg-key ":" fg-value ( "," fg-key ":" fg-value )* )? "}"
fg-list ::= "[" ( fg-value ( "," fg-value )* )? "]"
'''


def scan_calls(text: str, start: int) -> list[ScannedCall]:
    """The calls from `start` on (the first opener there), the last one incomplete while it is being written."""
    calls, pos = [], start
    while text.startswith(OPEN, pos):
        match = _NAME.match(text, pos + len(OPEN))
        if match is None:
            break
        end = text.find(CLOSE, match.end())
        body = text[match.end() - 1:end if end >= 0 else len(text)]
        try:
            value, used = _value(body, 0)
            arguments, complete = json.dumps(value, ensure_ascii=False), end >= 0 and used == len(body)
        except (ValueError, IndexError):
            arguments, complete = "", False
        calls.append(ScannedCall(match.group(1), arguments if complete else "", complete,
                                 end + len(CLOSE) if end >= 0 else len(text)))
        if not complete:
            break
        pos = calls[-1].end
    return calls


def _value(text: str, pos: int) -> tuple[Any, int]:
    """The value at `pos` and the index after it.

    Raises:
        ValueError: not FunctionGemma's syntax; IndexError: cut short.
    """
    if text.startswith(ESCAPE, pos):
        end = text.index(ESCAPE, pos + len(ESCAPE))
        return text[pos + len(ESCAPE):end], end + len(ESCAPE)
    if text[pos] in "{[":
        closing, items, pos = "}" if text[pos] == "{" else "]", [], pos + 1
        while text[pos] != closing:
            if closing == "}":
                key, _, _ = text[pos:].partition(":")
                item, pos = _value(text, pos + len(key) + 1)
                items.append((key, item))
            else:
                item, pos = _value(text, pos)
                items.append(item)
            pos += text[pos] == ","
        return (dict(items) if closing == "}" else items), pos + 1
    bare = _BARE.match(text, pos).group(0)
    return json.loads(bare) if bare in ("true", "false", "null") or re.fullmatch(r"-?\d+(\.\d+)?", bare) \
        else bare, pos + len(bare)


def call_grammar(functions: list[dict], parallel: bool) -> str:
    """GBNF for calls of `functions` (OpenAI's function objects) with arguments valid for their schemas."""
    rules: list[str] = []
    alternatives = [f'"call:{f["name"]}" {_rule(f["parameters"], f"fg-args-{i}", rules)}'
                    for i, f in enumerate(functions)]
    one = f'"{OPEN}" ( {" | ".join(alternatives)} ) "{CLOSE}"'
    root = f"root ::= {one} ( {one} )*" if parallel else f"root ::= {one}"
    return "\n".join([root, *rules]) + "\n" + COMMON_RULES


def _rule(schema: Any, name: str, rules: list[str]) -> str:
    """The expression for a value of `schema`, adding the rules it needs (named after `name`)."""
    if not isinstance(schema, dict):
        return "fg-value"
    if "enum" in schema:
        return "( " + " | ".join(_literal(value) for value in schema["enum"]) + " )"
    kind = schema.get("type")
    if kind == "object" and isinstance(schema.get("properties"), dict) and schema["properties"]:
        return _object_rule(schema, name, rules)
    if kind == "array":
        item = _rule(schema.get("items"), f"{name}-item", rules)
        return f'"[" ( {item} ( "," {item} )* )? "]"'
    return {"string": "fg-string", "integer": "fg-integer", "number": "fg-number", "boolean": "fg-boolean",
            "null": '"null"', "object": "fg-object"}.get(kind, "fg-value")


def _object_rule(schema: dict, name: str, rules: list[str]) -> str:
    """Required properties in order, then each optional one or not, as FunctionGemma writes keys."""
    required = [key for key in schema.get("required", []) if key in schema["properties"]]
    optional = [key for key in schema["properties"] if key not in required]
    parts = [f'"{key}:" {_rule(schema["properties"][key], f"{name}-{i}", rules)}'
             for i, key in enumerate(required + optional)]
    tail = lambda start: "".join(f' ( "," {part} )?' for part in parts[start:])  # noqa: E731
    if required:
        body = ' "," '.join(parts[:len(required)]) + tail(len(required))
    else:  # no comma before the first key written, whichever it is
        body = "( " + " | ".join(part + tail(i + 1) for i, part in enumerate(parts)) + " )?"
    rules.append(f'{name} ::= "{{" {body} "}}"')
    return name


def _literal(value: Any) -> str:
    text = f"{ESCAPE}{value}{ESCAPE}" if isinstance(value, str) else json.dumps(value)
    return json.dumps(text)
