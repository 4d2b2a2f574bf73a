"""The declared models (MODELS_MANIFEST): their states, a reconciliation on request, and readiness."""
from __future__ import annotations

from flask import Blueprint, jsonify

from proxy.routes.auth import require_api_key
from proxy.services import services

bp = Blueprint("manifest", __name__)


@bp.get("/v1/api/manifest")
def get_manifest():
    reconciler = services().reconciler
    models = reconciler.views()
    # `error`: why the file as it is now is not in force (malformed); the last good entries are.
    return jsonify(ready=all(m["state"] == "ready" for m in models), models=models, error=reconciler.error,
                   checked_at=reconciler.checked_at, reconciled_at=reconciler.reconciled_at)


@bp.post("/v1/api/manifest/sync")
@require_api_key
def sync_manifest():
    services().reconciler.request_sync()
    return jsonify(status="syncing"), 202


@bp.get("/readyz")
def readyz():
    """Ready when the backend answers (within its health timeout) and every declared model is ready."""
    backend = services().backend.health() is not None
    not_ready = [{key: m[key] for key in ("model", "filename", "state", "code")}
                 for m in services().reconciler.views() if m["state"] != "ready"]
    if backend and not not_ready:
        return jsonify(status="ready")
    return jsonify(status="not_ready", backend=backend, not_ready=not_ready), 503
