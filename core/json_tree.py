"""Checks on a parsed JSON request body that both processes make before anything else reads it.

Python's parser accepts two things the rest of the code cannot take: a lone UTF-16 surrogate (`"\\ud800"`
decodes to a `str` that no encoder writes back) and nesting deep enough that any recursive reader (the
JSON-schema converter, `json.dumps`, a template) runs out of stack. One iterative walk finds both.
"""
from __future__ import annotations

import re
from typing import Any

MAX_JSON_DEPTH = 64  # arrays and objects inside one another in a request body (docs/api.md, Limits)
# A JSON escape of a UTF-16 surrogate: only a body with one can hold a lone surrogate after parsing
# (a raw surrogate is not valid UTF-8, so the decoder refuses it).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_tree_problem(value: Any, raw: bytes = b"", max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """What makes a parsed body unusable, naming where (`messages[2].content`), or None when it is fine.

    `raw` is the body as sent: without a surrogate escape in it, strings are not searched.
    """
    search = not raw or _SURROGATE_ESCAPE.search(raw) is not None
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth >= max_depth:
                return f"`{path or 'the body'}` is nested deeper than {max_depth} levels"
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                if search and isinstance(key, str) and _LONE_SURROGATE.search(key):
                    return f"a key in `{path or 'the body'}` holds a lone UTF-16 surrogate (not valid Unicode)"
                name = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
                stack.append((child, name.lstrip("."), depth + 1))
        elif search and isinstance(node, str) and _LONE_SURROGATE.search(node):
            return f"`{path or 'the body'}` holds a lone UTF-16 surrogate (not valid Unicode)"
    return None
