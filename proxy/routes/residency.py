"""Which models the backend holds in memory (docs/api.md, Residency): GET /v1/api/running, POST /v1/api/load and
POST /v1/api/unload, forwarded to the backend's /api/running, /api/load and /api/unload, each model named with
what it was pulled as."""
from __future__ import annotations

from flask import Blueprint, jsonify

from proxy.routes.auth import require_api_key
from proxy.errors import ErrorCode, ProxyError
from proxy.ollama.convert import keep_alive
from proxy.ollama.listing import installed_models
from proxy.ollama.names import pulled_as, resolve_model
from proxy.routes.body import json_body
from proxy.backend.upstream import call_backend
from proxy.services import services

bp = Blueprint("residency", __name__)


@bp.get("/v1/api/running")
def running():
    answer = call_backend("/api/running", None, [], method="GET").json()
    names = _pulled_names()
    models = answer.get("models") if isinstance(answer.get("models"), list) else []
    return jsonify(models=[{"model": names.get(entry.get("id"), entry.get("id")), **entry}
                           for entry in models if isinstance(entry, dict)])


@bp.post("/v1/api/load")
@require_api_key
def load():
    body = _residency_body()
    model, files = resolve_model(services().store, body["model"])
    answer = call_backend("/api/load", {"model": model, **keep_alive(body)}, files).json()
    return jsonify(model=_pulled_names().get(model, model), **answer)


@bp.post("/v1/api/unload")
@require_api_key
def unload():
    body = _residency_body()
    try:
        model, files = resolve_model(services().store, body["model"])
    except ProxyError as err:  # a model deleted while loaded is unknown to the store, not to the backend
        if err.code != ErrorCode.MODEL_NOT_FOUND or body["model"] not in _running_ids():
            raise
        model, files = body["model"], []
    answer = call_backend("/api/unload", {"model": model}, files).json()
    return jsonify(model=_pulled_names().get(model, model), **answer)


def _residency_body() -> dict:
    """Raises: ProxyError invalid_request."""
    body = json_body()
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"].strip():
        raise ProxyError(ErrorCode.INVALID_REQUEST, 'the body must be {"model": ..., "keep_alive"?: ...}')
    return body


def _running_ids() -> set[str]:
    """Ids of the models the backend holds in memory."""
    models = call_backend("/api/running", None, [], method="GET").json().get("models")
    return {entry.get("id") for entry in models if isinstance(entry, dict)} if isinstance(models, list) else set()


def _pulled_names() -> dict[str, str]:
    """Model id -> what it was pulled as, for every installed model."""
    return {model["id"]: pulled_as(model) for model in installed_models(services().store)}
