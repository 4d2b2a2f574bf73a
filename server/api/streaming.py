"""Server-sent events: formatting, and a response body that holds a model until the stream ends."""
from __future__ import annotations

import json
import logging
import re
from typing import Callable, Iterator

from flask import Response

from core.errors import ErrorCode

from ..errors import BackendError, error_body
from ..residency.models import Lease

log = logging.getLogger(__name__)

DONE_EVENT = "data: [DONE]\n\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def text_event(text: str) -> str:
    """One SSE event carrying `text`; line breaks split it over several `data:` lines (SSE standard)."""
    if "\n" not in text and "\r" not in text:
        return f"data: {text}\n\n"
    return "data: " + _LINE_BREAK.sub("\ndata: ", text) + "\n\n"


def json_event(value: object) -> str:
    return f"data: {json.dumps(value, ensure_ascii=False, separators=(',', ':'))}\n\n"


class LeasedStream:
    """An SSE body that holds a model's lease until the events end, fail, or the client goes away.

    WSGI servers call `close()` when a response ends for any reason, a client that disconnected
    included; closing stops the generation and frees the model for the next request.
    """

    def __init__(self, lease: Lease, events: Iterator[str], cancel: Callable[[], None] | None = None):
        self._lease = lease
        self._events = events
        self._cancel = cancel  # closes the job's events behind `events` (JobEvents.close: its slot frees next step)
        self._pending: list[str] = []
        self._finished = False

    def prime(self) -> None:
        """Produce the first event now, so that errors before any output get a real HTTP status.

        Raises:
            Whatever the generation raises first; the lease is released then.
        """
        try:
            self._pending.append(next(self._events))
        except StopIteration:
            self._finish()
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> "LeasedStream":
        return self

    def __next__(self) -> str:
        if self._pending:
            return self._pending.pop()
        if self._finished:
            raise StopIteration
        try:
            return next(self._events)
        except StopIteration:
            self._finish()
            raise
        except BackendError as err:
            self._finish()
            return json_event(err.to_dict())
        except Exception:
            log.exception("generation failed mid-stream for model %s", self._lease.model.id)
            self._finish()
            return json_event(error_body(ErrorCode.INTERNAL_ERROR, "generation failed; see the backend's log"))

    def close(self) -> None:
        try:
            if self._cancel is not None:
                self._cancel()
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()

    def _finish(self) -> None:
        self._finished = True
        self._lease.release()


def sse_response(lease: Lease, events: Iterator[str], cancel: Callable[[], None] | None = None) -> Response:
    """A streaming `text/event-stream` response of `events`, holding `lease` while it runs.

    Raises:
        Whatever the generation raises before its first event (the lease is released then).
    """
    stream = LeasedStream(lease, events, cancel)
    stream.prime()
    return Response(stream, mimetype="text/event-stream", headers=SSE_HEADERS)
