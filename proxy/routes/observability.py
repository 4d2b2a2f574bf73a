"""GET /metrics (Prometheus text) and GET /openapi.json."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from proxy.openapi import build_openapi

bp = Blueprint("observability", __name__)


@bp.get("/metrics")
def metrics():
    return current_app.extensions["metrics"].render()


@bp.get("/openapi.json")
def openapi():
    return jsonify(build_openapi())
