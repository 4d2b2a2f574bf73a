"""OpenAI's POST /v1/embeddings, forwarded to the backend as the other OpenAI-compatible endpoints are (a model
named as pulled resolves, FORWARD_MAX_IN_FLIGHT applies); its errors answer in OpenAI's shape
(core.errors.OPENAI_PATHS), so SDKs show them."""
from __future__ import annotations

from flask import Blueprint

from proxy.routes import forward

bp = Blueprint("embeddings", __name__)


@bp.post("/v1/embeddings")
def embeddings():
    return forward._forward("/v1/embeddings")  # noqa: SLF001 - the one forwarding path, not a copy of it
