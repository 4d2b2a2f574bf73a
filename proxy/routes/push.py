"""POST /v1/api/push: an installed model, published to an OCI registry as Docker Model Runner's artifact."""
from __future__ import annotations

from flask import Blueprint

from proxy.routes.auth import require_api_key
from proxy.routes.body import json_body
from proxy.routes.ndjson import event_stream, final_answer
from proxy.services import services

bp = Blueprint("push", __name__)


@bp.post("/v1/api/push")
@require_api_key
def push():
    service = services().push_service
    prepared = service.prepare(json_body())
    if not prepared.request.stream:
        return final_answer(service.run(prepared, lambda event: None))
    return event_stream(service.events(prepared))
