"""GET /metrics (Prometheus text) and GET /openapi.json."""
from __future__ import annotations

from flask import Blueprint, jsonify

from proxy.openapi.document import build_openapi
from proxy.services import services

bp = Blueprint("observability", __name__)


@bp.get("/metrics")
def metrics():
    return services().metrics.render()


@bp.get("/openapi.json")
def openapi():
    return jsonify(build_openapi())
