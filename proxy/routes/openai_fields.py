"""Fields of OpenAI's completions and chat API that the backend does not implement: refused with 400
`invalid_request` naming the field, rather than ignored (a client asking for `n: 2` would otherwise get one
choice and no word why)."""
from __future__ import annotations

import json
from typing import Any, Callable

from proxy.errors import ErrorCode, ProxyError

OPENAI_GENERATING_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})


def _above_one(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1


def _asked(value: Any) -> bool:
    """Whether a field asks for something: set to anything but null, false, 0, "" or an empty list."""
    return value not in (None, False, 0, "", [], {})


def _names_a_tool(value: Any) -> bool:
    return _asked(value) and value != "none"


# field -> (does this value ask for what is unsupported, why it is refused). One place to drop a rule once
# the backend supports the field.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n": (_above_one, "one choice per request is generated; send n: 1 (or leave it out) and repeat the request"),
    "best_of": (_above_one, "one candidate per request is generated; send best_of: 1 (or leave it out)"),
    "logprobs": (_asked, "log probabilities are not returned by this server"),
    "top_logprobs": (_asked, "log probabilities are not returned by this server"),
    "functions": (_asked, "function calling is not supported by this server"),
    "function_call": (_names_a_tool, "function calling is not supported by this server"),
    "echo": (_asked, "echoing the prompt is not supported by this server"),
}


def check_openai_fields(path: str, body: Any) -> None:
    """Refuse the first field of an OpenAI request to `path` that asks for what the backend cannot do.

    Raises:
        ProxyError: invalid_request, naming the field and the value sent.
    """
    if path not in OPENAI_GENERATING_PATHS or not isinstance(body, dict):
        return
    for field, (unsupported, why) in RULES.items():
        if field in body and unsupported(body[field]):
            raise ProxyError(ErrorCode.INVALID_REQUEST, f"unsupported field {field!r} "
                             f"(sent {_shown(body[field])}): {why}", param=field)


def _shown(value: Any) -> str:
    """The value as JSON, cut short: a tools list may be long."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
