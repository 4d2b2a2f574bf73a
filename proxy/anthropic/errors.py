"""Errors of the Messages routes in Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`, with our
code's HTTP status: the `anthropic` SDK raises the exception class of the status and shows the message."""
from __future__ import annotations

import json
import logging

from flask import Blueprint, jsonify
from werkzeug.exceptions import HTTPException

from core.errors import ServiceError

log = logging.getLogger(__name__)
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
         413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}


def anthropic_error(status: int, message: str) -> dict:
    """Anthropic's error body for an HTTP status."""
    kind = TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_event(status: int, message: str) -> str:
    """The `error` event that ends a stream which failed after it began."""
    return f"event: error\ndata: {json.dumps(anthropic_error(status, message))}\n\n"


def register_anthropic_errors(blueprint: Blueprint) -> None:
    """Errors of the blueprint's views in Anthropic's shape; an unexpected one is logged and says nothing inside."""

    @blueprint.errorhandler(ServiceError)
    def _ours(err: ServiceError):
        return jsonify(anthropic_error(err.status, err.message)), err.status, err.headers

    @blueprint.errorhandler(HTTPException)
    def _http(err: HTTPException):
        status = err.code or 500
        return jsonify(anthropic_error(status, err.description or err.name)), status

    @blueprint.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error")
        return jsonify(anthropic_error(500, "internal error; see the proxy's log")), 500
