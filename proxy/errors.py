"""Typed errors with the stable codes of API.md, and the one handler that turns them into JSON."""
from __future__ import annotations

import contextlib
import errno
import logging
from typing import Iterator

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# code -> HTTP status. Stream-only codes carry the status `stream:false` answers with.
STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "body_too_large": 413,
    "invalid_repo_id": 400,
    "unsafe_filename": 400,
    "not_gguf": 400,
    "auth_required": 401,
    "repo_not_allowed": 403,
    "repo_not_found": 404,
    "gated_repo": 403,
    "file_not_found": 404,
    "revision_not_found": 404,
    "pull_queue_full": 409,
    "model_busy": 409,
    "name_conflict": 409,
    "pull_stopped": 503,
    "model_not_found": 404,
    "insufficient_storage": 507,
    "checksum_mismatch": 502,
    "invalid_gguf": 422,
    "smoke_test_failed": 422,
    "hub_unavailable": 502,
    "hub_token_rejected": 502,
    "backend_unavailable": 502,
    "backend_timeout": 504,
    "server_busy": 503,  # FORWARD_MAX_IN_FLIGHT requests are being forwarded already
    "not_found": 404,
    "method_not_allowed": 405,
    "internal_error": 500,
}


class ProxyError(Exception):
    """An error a client can act on: a stable `code`, its HTTP status and a message."""

    def __init__(self, code: str, message: str, status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE.get(code, 500)
        self.headers = headers or {}  # such as Retry-After

    def to_dict(self) -> dict:
        return {"status": "error", "error": self.message, "code": self.code}


def error_body(code: str, message: str) -> dict:
    return {"status": "error", "error": message, "code": code}


def register_error_handlers(app: Flask, service: str = "proxy") -> None:
    """Every error, ours, werkzeug's or unexpected, answers as API.md's JSON error (the backend too)."""

    @app.errorhandler(ProxyError)
    def _proxy_error(err: ProxyError):
        return jsonify(err.to_dict()), err.status, err.headers

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
        return jsonify(error_body("internal_error", f"internal error; see the {service}'s log")), 500


@contextlib.contextmanager
def disk_full_is_insufficient_storage(message: str = "the models volume is full; free some space and pull again"
                                      ) -> Iterator[None]:
    """A full volume or quota met in the block (ENOSPC, EDQUOT) is a client-facing insufficient_storage.

    Raises:
        ProxyError: insufficient_storage.
    """
    try:
        yield
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ProxyError("insufficient_storage", message) from err
