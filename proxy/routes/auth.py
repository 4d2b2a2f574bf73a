"""PROXY_API_KEY: pull and delete need `Authorization: Bearer <key>` when it is set, or Basic auth whose
password is the key (what clients send for a base URL of `http://user:key@host`)."""
from __future__ import annotations

import base64
import binascii
import functools
import hmac

from flask import request

from proxy.errors import ErrorCode, ProxyError
from proxy.services import services


def bears_api_key() -> bool:
    """Whether this request carries PROXY_API_KEY; never true when it is unset."""
    key = services().settings.api_key
    if not key:
        return False
    if hmac.compare_digest(request.headers.get("X-Api-Key", "").strip().encode(), key.encode()):
        return True  # Anthropic's clients send the key so
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        given = _basic_password(given.strip())
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), key.encode())


def _basic_password(credentials: str) -> str:
    """The password of Basic credentials (`base64(user:password)`; any user name), "" when they do not decode."""
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[2]


def require_api_key(view):
    """Raises: ProxyError auth_required."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if services().settings.api_key and not bears_api_key():
            raise ProxyError(ErrorCode.AUTH_REQUIRED, "this endpoint needs 'Authorization: Bearer <PROXY_API_KEY>'")
        return view(*args, **kwargs)

    return wrapper
