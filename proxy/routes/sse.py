"""How a translating route (Anthropic's Messages, OpenAI's Responses) answers: the whole object, or its events as
server-sent events named by their `type`, ending with an `error` event when the backend fails part way."""
from __future__ import annotations

import json
import logging
from typing import Callable, Iterator

from flask import Response, jsonify

from proxy.backend.upstream import Upstream
from proxy.errors import ProxyError

log = logging.getLogger(__name__)
# Each event goes out as it comes: no cache keeps it, no proxy in front (nginx) buffers it.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def translated_answer(upstream: Upstream, events: Iterator[dict], whole: Callable[[], dict], stream: bool,
                      failed: Callable[[ProxyError], dict]) -> Response:
    """`events` (read from `upstream`) as an SSE stream, or, without `stream`, run to their end and `whole()`
    answered as JSON; `failed(err)` is the data of the last event when the backend fails mid-stream.

    Raises: ProxyError when the backend fails before a whole answer is ready (not streamed).
    """
    if not stream:
        for _ in events:
            pass
        return jsonify(whole())
    response = Response(_framed(events, failed), mimetype="text/event-stream", headers=SSE_HEADERS)
    response.call_on_close(upstream.close)  # a client that leaves stops the backend's generation
    return response


def _framed(events: Iterator[dict], failed: Callable[[ProxyError], dict]) -> Iterator[str]:
    try:
        for event in events:
            yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
    except ProxyError as err:
        log.warning("backend stream broke off: %s", err.code)
        yield f"event: error\ndata: {json.dumps(failed(err), ensure_ascii=False)}\n\n"
