"""The backend's error answers as the proxy's errors, whichever of its two shapes it answered in."""
from __future__ import annotations

import json

import requests

from proxy.errors import ErrorCode, ProxyError, STATUS_BY_CODE

ERROR_BODY_MAX = 64 * 1024  # an error answer larger than this is not the backend's JSON error
# A backend error answer without a code we know stands for the code of its status.
_CODE_BY_STATUS = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.BODY_TOO_LARGE,
                   502: ErrorCode.BACKEND_UNAVAILABLE, 503: ErrorCode.SERVER_BUSY, 504: ErrorCode.BACKEND_TIMEOUT}


def backend_error(response: requests.Response) -> ProxyError:
    """The backend's error answer as our error, in either of its shapes (docs/api.md's or OpenAI's), with its status
    and Retry-After; a code we do not know becomes the one its status stands for."""
    try:
        raw = response.raw.read(ERROR_BODY_MAX, decode_content=True)
        body = json.loads(raw)
    except (ValueError, requests.RequestException, OSError, AttributeError):
        body = None
    inner = body.get("error") if isinstance(body, dict) else None
    param = None
    if isinstance(inner, dict):  # OpenAI's shape
        message, code, param = inner.get("message"), inner.get("code"), inner.get("param")
    else:
        message, code = inner, body.get("code") if isinstance(body, dict) else None
    status = response.status_code
    if not isinstance(code, str) or code not in STATUS_BY_CODE:  # a list or an object is no code either
        code = _CODE_BY_STATUS.get(status, ErrorCode.INVALID_REQUEST if status < 500 else ErrorCode.BACKEND_UNAVAILABLE)
    if not isinstance(message, str) or not message:
        message = f"the backend answered HTTP {status} ({code})"
    headers = {"Retry-After": response.headers["Retry-After"]} if "Retry-After" in response.headers else None
    return ProxyError(code, message, status=status, headers=headers, param=param if isinstance(param, str) else None)
