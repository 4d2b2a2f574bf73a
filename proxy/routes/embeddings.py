"""OpenAI's POST /v1/embeddings, forwarded to the backend as the other OpenAI-compatible endpoints are (a model
named as pulled resolves, FORWARD_MAX_IN_FLIGHT applies), with errors in OpenAI's shape so SDKs show them."""
from __future__ import annotations

from flask import Blueprint, jsonify
from werkzeug.exceptions import HTTPException

from core.errors import ServiceError, openai_error_body
from proxy.routes import forward

bp = Blueprint("embeddings", __name__)


@bp.post("/v1/embeddings")
def embeddings():
    return forward._forward("/v1/embeddings")  # noqa: SLF001 - the one forwarding path, not a copy of it


@bp.errorhandler(ServiceError)
def _ours(err: ServiceError):
    return jsonify(openai_error_body(err.code, err.message, err.status)), err.status, err.headers


@bp.errorhandler(HTTPException)
def _http(err: HTTPException):
    status = err.code or 500
    code = {413: "body_too_large"}.get(status, "invalid_request" if status < 500 else "internal_error")
    return jsonify(openai_error_body(code, err.description or err.name, status)), status
