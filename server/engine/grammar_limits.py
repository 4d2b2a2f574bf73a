"""Bounds on what a request may ask of llama.cpp's grammar machinery, checked before any of it runs.

The JSON-schema converter writes `maxLength: N` or `maxItems: N` as N groups nested in one another, and
`minItems: N` as N copies of the item; llama.cpp's grammar parser recurses once per nesting level, so a
190-byte schema could overflow the engine thread's stack (SIGSEGV: every model's requests lost), and a
4,000,000-item minimum could take gigabytes. An enum's alternatives are each checked against the vocabulary
whenever a sampled token is rejected, so their number bounds a step's grammar cost. docs/api.md (Structured
output limits) lists the bounds; a request past one is a 400 naming the part, in milliseconds.
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import InvalidRequest

MAX_REPEAT = 1000  # maxLength, minLength, maxItems, minItems, a pattern's {m,n}
MAX_ENUM = 256  # values of one enum (each an alternative the grammar tracks)
MAX_SCHEMA_NODES = 5000  # objects and arrays in one schema
MAX_GRAMMAR_BYTES = 256 * 1024  # GBNF text given to llama.cpp
MAX_GRAMMAR_DEPTH = MAX_REPEAT + 100  # groups nested in groups in GBNF: the parser's recursion depth
MAX_GRAMMAR_RULES = 4000  # rules in GBNF: rule references are followed recursively at compile time

_BOUNDED_KEYS = ("maxLength", "minLength", "maxItems", "minItems", "minProperties", "maxProperties")
_PATTERN_REPEAT = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")
_RULE = re.compile(r"^[ \t]*[a-zA-Z0-9_-]+[ \t]*::=", re.MULTILINE)


def check_schema(schema: Any, where: str) -> None:
    """Refuse a JSON schema whose grammar would be too large or too deep for llama.cpp.

    Raises:
        InvalidRequest: naming the part (`response_format.json_schema.schema.properties.name.maxLength`).
    """
    stack: list[tuple[Any, str]] = [(schema, where)]
    nodes = 0
    while stack:
        node, path = stack.pop()
        if isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node))
        if not isinstance(node, dict):
            continue
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            raise _refused(f"`{where}` has more than {MAX_SCHEMA_NODES} objects: simplify the schema", where)
        _check_node(node, path)
        stack.extend((child, f"{path}.{key}") for key, child in node.items() if key != "enum")


def _check_node(node: dict, path: str) -> None:
    for key in _BOUNDED_KEYS:
        value = node.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_REPEAT:
            raise _refused(f"`{path}.{key}` is {value}; a schema's lengths and item counts may be at most "
                           f"{MAX_REPEAT} (docs/api.md, Limits)", path)
    enum = node.get("enum")
    if isinstance(enum, list) and len(enum) > MAX_ENUM:
        raise _refused(f"`{path}.enum` has {len(enum)} values; at most {MAX_ENUM} (each is an alternative "
                       "the grammar checks at every token)", path)
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        for match in _PATTERN_REPEAT.finditer(pattern):
            if max(int(number) for number in match.groups() if number) > MAX_REPEAT:
                raise _refused(f"`{path}.pattern` repeats {match.group(0)}; a repetition may count to at "
                               f"most {MAX_REPEAT}", path)


def check_grammar(grammar: str, where: str) -> None:
    """Refuse GBNF that llama.cpp's parser could not take without risk to the process: too large, nested too
    deep, or too many rules. Whatever wrote it (a schema, a tool list), this runs before llama.cpp sees it.

    Raises:
        InvalidRequest: naming `where` (the request field the grammar came from).
    """
    if len(grammar) > MAX_GRAMMAR_BYTES:
        raise _refused(f"`{where}` gives a grammar of {len(grammar)} bytes; at most {MAX_GRAMMAR_BYTES}: "
                       "simplify the schema", where)
    if len(_RULE.findall(grammar)) > MAX_GRAMMAR_RULES:
        raise _refused(f"`{where}` gives a grammar of more than {MAX_GRAMMAR_RULES} rules: simplify the schema",
                       where)
    depth = grammar_depth(grammar)
    if depth > MAX_GRAMMAR_DEPTH:
        raise _refused(f"`{where}` gives a grammar nested {depth} groups deep; at most {MAX_GRAMMAR_DEPTH}: "
                       "lower its lengths and item counts", where)


def _refused(message: str, path: str) -> InvalidRequest:
    return InvalidRequest(message, param=re.split(r"[.\[]", path, maxsplit=1)[0])


def grammar_depth(grammar: str) -> int:
    """How deep GBNF's parenthesized groups nest (outside string literals and character classes)."""
    depth = deepest = 0
    i, n = 0, len(grammar)
    while i < n:
        char = grammar[i]
        if char in "\"[":
            i = _skip_literal(grammar, i, '"' if char == '"' else "]")
        elif char == "#":
            newline = grammar.find("\n", i)
            i = n if newline < 0 else newline
        elif char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
        i += 1
    return deepest


def _skip_literal(grammar: str, start: int, closer: str) -> int:
    """The index of the character that closes the literal opened at `start` (backslash escapes skipped)."""
    i = start + 1
    while i < len(grammar) and grammar[i] != closer:
        i += 2 if grammar[i] == "\\" else 1
    return i


def check_compiles(vocab: Any, grammar: str | None, where: str) -> None:
    """Compile `grammar` once on the calling thread and free it, so a grammar llama.cpp refuses is a 400 before
    a stream starts (the engine compiles it again for the request). Thread-safe: the vocabulary is read only.

    Raises:
        InvalidRequest: past a bound (check_grammar), or llama.cpp cannot compile it.
    """
    if grammar is None:
        return
    import llama_cpp as ll

    check_grammar(grammar, where)
    sampler = ll.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if not sampler:
        raise _refused(f"`{where}` gives a grammar llama.cpp cannot compile (see the backend's log for the "
                       "rule): simplify the schema", where)
    ll.llama_sampler_free(sampler)
