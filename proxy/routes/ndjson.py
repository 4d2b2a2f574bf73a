"""How a route answers with a stream of JSON objects (pull, push, Ollama's pull and generate) or with the last
one alone: the NDJSON framing and the final answer, written once."""
from __future__ import annotations

import json
from typing import Iterable, Iterator

from flask import Response, jsonify

from proxy.pulls.events import Failed, PullEvent

NDJSON = "application/x-ndjson"
# Each line goes out as it comes: no cache keeps it, no proxy in front (nginx) buffers it.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def ndjson_response(lines: Iterable[str]) -> Response:
    """A streamed answer of NDJSON `lines`, each already framed (one JSON object and a newline)."""
    return Response(lines, mimetype=NDJSON, headers=STREAM_HEADERS)


def object_stream(objects: Iterable[dict]) -> Response:
    """A streamed answer, one JSON line an object."""
    return ndjson_response(_framed(objects))


def event_stream(events: Iterable[PullEvent]) -> Response:
    """A pull's or a push's events as they happen, in the contract's NDJSON lines."""
    return object_stream(event.to_json() for event in events)


def final_answer(event: PullEvent):
    """The last event alone as a JSON answer; a failure with its code's HTTP status."""
    return jsonify(event.to_json()), event.http_status if isinstance(event, Failed) else 200


def _framed(objects: Iterable[dict]) -> Iterator[str]:
    for obj in objects:
        yield json.dumps(obj) + "\n"
