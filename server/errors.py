"""The backend's typed errors; the JSON shape and the handler are the proxy's (proxy/errors.py)."""
from __future__ import annotations

from proxy.errors import ProxyError, error_body, register_error_handlers

__all__ = ["BackendError", "InvalidRequest", "ModelLoadFailed", "ModelNotFound", "error_body",
           "register_error_handlers"]

# code -> HTTP status. The first four are API.md's; the others are the backend's own.
STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "body_too_large": 413,
    "model_not_found": 404,
    "internal_error": 500,
    # The file is there but llama.cpp cannot load it (not a GGUF, truncated, unknown
    # architecture): the request was well formed, the named model is not usable.
    "model_load_failed": 422,
    "not_found": 404,
    "method_not_allowed": 405,
}


class BackendError(ProxyError):
    """An error a client can act on: a stable `code`, its HTTP status (the backend's table) and a message."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(code, message, status or STATUS_BY_CODE.get(code, 500))


class InvalidRequest(BackendError):
    def __init__(self, message: str):
        super().__init__("invalid_request", message)


class ModelNotFound(BackendError):
    def __init__(self, message: str):
        super().__init__("model_not_found", message)


class ModelLoadFailed(BackendError):
    def __init__(self, message: str):
        super().__init__("model_load_failed", message)
