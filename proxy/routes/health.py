"""Service info, readiness (/v1/health, asks the backend) and liveness (/livez, does not)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from proxy import VERSION
from proxy.pulls.events import Downloading
from proxy.services import services

bp = Blueprint("health", __name__)
ENDPOINTS = {
    "health": "/v1/health", "livez": "/livez", "models": "/v1/models", "generate": "/v1/generate",
    "completions": "/v1/completions", "chat": "/v1/chat/completions", "pull": "/v1/api/pull",
    "pulls": "/v1/api/pulls", "files": "/v1/api/files", "delete": "/v1/api/delete",
    "installed": "/v1/api/models", "manifest": "/v1/api/manifest", "readyz": "/readyz", "metrics": "/metrics", "openapi": "/openapi.json",
}


@bp.get("/")
def info():
    registry = services().pulls
    running, waiting = registry.counts()
    jobs = registry.jobs()
    current = next((job for job in jobs if not job.done), None)
    latest = current.latest if current else None
    progress = latest if isinstance(latest, Downloading) else None
    finished = [job for job in jobs if job.done]
    return jsonify(
        service="gguf-proxy-sidecar", status="running", version=VERSION, endpoints=ENDPOINTS,
        download_status={
            "in_progress": current is not None,
            "current_model": current.repo if current else None,
            "current_filename": current.filename if current else None,
            "completed": progress.completed if progress else 0, "total": progress.total if progress else 0,
        },
        queue={"running": running, "waiting": waiting, "max": registry.queue_max, "finished": len(finished)},
    )

@bp.get("/v1/health")
def health():
    client = services().backend
    backend = client.health()
    if backend is None:
        down = client.unavailable("the backend does not answer its /health", wait=False)
        return jsonify(status="error", code=down.code, proxy="ok", backend="down", error=down.message), 503
    return jsonify(status="ok", proxy="ok", backend=backend)

@bp.get("/livez")
def livez():
    return jsonify(status="ok")
