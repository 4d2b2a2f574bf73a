"""The backend's typed errors; codes, statuses, the JSON shape and the handler are core.errors'."""
from __future__ import annotations

from core.errors import ServiceError, error_body, register_error_handlers

__all__ = ["BackendError", "InvalidRequest", "ModelLoadFailed", "ModelNotFound", "ModelTooLarge", "ServerBusy",
           "error_body", "register_error_handlers"]
RETRY_AFTER_S = 1  # a full queue drains in about one generation's time


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


class ModelTooLarge(BackendError):
    def __init__(self, message: str):
        super().__init__("model_too_large", message)


class ServerBusy(BackendError):
    """Every slot runs and MAX_QUEUE requests wait (or the model is being unloaded): try again shortly."""

    def __init__(self, message: str):
        super().__init__("server_busy", message, headers={"Retry-After": str(RETRY_AFTER_S)})
