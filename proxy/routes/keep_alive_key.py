"""A generating request's `keep_alive` that pins or unloads a model is residency, which PROXY_API_KEY guards.

`POST /v1/api/load` and `/unload` need the key; `keep_alive: -1` (forever) or `0` (unload now) on a chat or a
generate does the same, whatever the dialect, so it needs the key too. Other keep_alive values stay open:
they only say how long an idle model may stay, as KEEP_ALIVE does.
"""
from __future__ import annotations

from typing import Any

from core.units import parse_keep_alive
from proxy.errors import ErrorCode, ProxyError
from proxy.routes.auth import bears_api_key
from proxy.services import services


def require_key_to_pin(body: Any) -> None:
    """Refuse a keyless request whose keep_alive pins (-1, or longer than core.units.KEEP_ALIVE_FOREVER_S) or
    unloads (0) a model, when PROXY_API_KEY is set. A keep_alive that does not parse is left to the view's 400.

    Raises:
        ProxyError: auth_required.
    """
    if not isinstance(body, dict) or body.get("keep_alive") is None or not services().settings.api_key:
        return
    try:
        seconds = parse_keep_alive(body["keep_alive"])
    except ValueError:
        return
    if seconds in (None, 0) and not bears_api_key():
        raise ProxyError(ErrorCode.AUTH_REQUIRED, "keep_alive -1 (keep loaded forever) or 0 (unload) changes what "
                         "stays loaded for everyone: it needs 'Authorization: Bearer <PROXY_API_KEY>'")
