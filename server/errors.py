"""Typed errors with stable codes, and the one handler that turns every error into API.md's JSON."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

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


class BackendError(Exception):
    """An error a client can act on: a stable `code`, its HTTP status and a message."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE.get(code, 500)

    def to_dict(self) -> dict:
        return error_body(self.code, self.message)


class InvalidRequest(BackendError):
    def __init__(self, message: str):
        super().__init__("invalid_request", message)


class ModelNotFound(BackendError):
    def __init__(self, message: str):
        super().__init__("model_not_found", message)


class ModelLoadFailed(BackendError):
    def __init__(self, message: str):
        super().__init__("model_load_failed", message)


def error_body(code: str, message: str) -> dict:
    return {"status": "error", "error": message, "code": code}


def register_error_handlers(app: Flask) -> None:
    """Every error, ours, werkzeug's or unexpected, answers as API.md's JSON error."""

    @app.errorhandler(BackendError)
    def _backend_error(err: BackendError):
        return jsonify(err.to_dict()), err.status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        status = err.code or 500
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            status, "invalid_request" if 400 <= status < 500 else "internal_error"
        )
        return jsonify(error_body(code, err.description or err.name)), status

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error")
        return jsonify(error_body("internal_error", "internal error; see the backend's log")), 500
