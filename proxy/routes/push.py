"""POST /v1/api/push: an installed model, published to an OCI registry as Docker Model Runner's artifact."""
from __future__ import annotations

import json
from typing import Iterable, Iterator

from flask import Blueprint, Response, jsonify

from proxy.auth import require_api_key
from proxy.pulls.events import Failed, PullEvent
from proxy.routes.body import json_body
from proxy.services import services

bp = Blueprint("push", __name__)
NDJSON = "application/x-ndjson"


@bp.post("/v1/api/push")
@require_api_key
def push():
    service = services().push_service
    prepared = service.prepare(json_body())
    if not prepared.request.stream:
        final = service.run(prepared, lambda event: None)
        return jsonify(final.to_json()), final.http_status if isinstance(final, Failed) else 200
    return Response(_ndjson(service.events(prepared)), mimetype=NDJSON,
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _ndjson(events: Iterable[PullEvent]) -> Iterator[str]:
    for event in events:
        yield json.dumps(event.to_json()) + "\n"
