"""Request bodies: JSON read the one way every view reads it, each failure a 4xx."""
from __future__ import annotations

from typing import Any

from flask import request

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
