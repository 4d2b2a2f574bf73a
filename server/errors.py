"""The backend's typed errors; codes, statuses, the JSON shape and the handler are core.errors'."""
from __future__ import annotations

from core.errors import ErrorCode, ServiceError, error_body, register_error_handlers

__all__ = ["BackendError", "InvalidRequest", "ModelLoadFailed", "ModelNotFound", "ModelTooLarge", "ServerBusy",
           "error_body", "register_error_handlers"]
RETRY_AFTER_S = 1  # a full queue drains in about one generation's time


class BackendError(ServiceError):
    """An error a client can act on: a stable `code` (an ErrorCode), its HTTP status and a message."""


class InvalidRequest(BackendError):
    def __init__(self, message: str, param: str | None = None):
        """`param`: the request field at fault, named in OpenAI's error shape."""
        super().__init__(ErrorCode.INVALID_REQUEST, message, param=param)


class ModelNotFound(BackendError):
    def __init__(self, message: str):
        super().__init__(ErrorCode.MODEL_NOT_FOUND, message)


class ModelLoadFailed(BackendError):
    def __init__(self, message: str):
        super().__init__(ErrorCode.MODEL_LOAD_FAILED, message)


class ModelTooLarge(BackendError):
    def __init__(self, message: str):
        super().__init__(ErrorCode.MODEL_TOO_LARGE, message)


class ServerBusy(BackendError):
    """Every slot runs and MAX_QUEUE requests wait (or the model is being unloaded): try again shortly."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.SERVER_BUSY, message, headers={"Retry-After": str(RETRY_AFTER_S)})
