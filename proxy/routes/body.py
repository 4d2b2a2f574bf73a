"""Request bodies: JSON read the one way every view reads it, each failure a 4xx."""
from __future__ import annotations

from typing import Any

from flask import request

from core.json_tree import json_tree_problem
from proxy.errors import ErrorCode, ProxyError


def json_body() -> Any:
    """The request body parsed as JSON, or None when it is not JSON (the view says what it expected).

    Raises:
        ProxyError: invalid_request (nested deeper than the parser goes).
    """
    try:
        return request.get_json(force=True, silent=True)
    except RecursionError as err:  # not a ValueError, so `silent` does not catch it
        raise ProxyError(ErrorCode.INVALID_REQUEST, "the JSON body is nested too deeply") from err


def check_json_tree(body: Any, raw: bytes) -> None:
    """Refuse a parsed body the backend or a translation cannot handle (core.json_tree): the generating routes
    call it; names in pulls and deletes keep their own rule (a lone surrogate there is unsafe_filename).

    Raises:
        ProxyError: invalid_request naming the part.
    """
    problem = json_tree_problem(body, raw)
    if problem is not None:
        raise ProxyError(ErrorCode.INVALID_REQUEST, f"the JSON body is not usable: {problem}")
