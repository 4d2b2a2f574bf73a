"""PROXY_API_KEY: pull and delete need `Authorization: Bearer <key>` when it is set."""
from __future__ import annotations

import functools
import hmac

from flask import current_app, request

from proxy.errors import ProxyError


def require_api_key(view):
    """Raises: ProxyError auth_required."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        key = current_app.extensions["settings"].api_key
        if key:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
                raise ProxyError("auth_required", "this endpoint needs 'Authorization: Bearer <PROXY_API_KEY>'")
        return view(*args, **kwargs)

    return wrapper
