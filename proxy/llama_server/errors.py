"""Errors of llama-server's endpoints in its shape: `{"error": {"code": <HTTP status>, "message", "type"}}`
(tools/server: format_error_response), so tools written against llama-server show the message."""
from __future__ import annotations

from flask import Blueprint, jsonify
from werkzeug.exceptions import HTTPException

from core.errors import ServiceError

# llama-server's error types by HTTP status; any other 4xx is invalid_request_error, 5xx server_error.
TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 501: "not_supported_error",
         503: "unavailable_error"}


def llama_error_body(status: int, message: str) -> dict:
    kind = TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"code": status, "message": message, "type": kind}}


def register_llama_errors(blueprint: Blueprint) -> None:
    """Errors of the blueprint's views in llama-server's shape, with our code's status."""

    @blueprint.errorhandler(ServiceError)
    def _ours(err: ServiceError):
        return jsonify(llama_error_body(err.status, err.message)), err.status, err.headers

    @blueprint.errorhandler(HTTPException)
    def _http(err: HTTPException):
        status = err.code or 500
        return jsonify(llama_error_body(status, err.description or err.name)), status
