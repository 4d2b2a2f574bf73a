"""The backend's typed errors; codes, statuses, the JSON shape and the handler are core.errors'."""
from __future__ import annotations

from core.errors import ServiceError, error_body, register_error_handlers

__all__ = ["BackendError", "InvalidRequest", "ModelLoadFailed", "ModelNotFound", "error_body",
           "register_error_handlers"]


class BackendError(ServiceError):
    """An error a client can act on: a stable `code` (an ErrorCode), its HTTP status and a message."""


class InvalidRequest(BackendError):
    def __init__(self, message: str):
        super().__init__("invalid_request", message)


class ModelNotFound(BackendError):
    def __init__(self, message: str):
        super().__init__("model_not_found", message)


class ModelLoadFailed(BackendError):
    def __init__(self, message: str):
        super().__init__("model_load_failed", message)
