"""The client of a request: whether anyone still waits for its answer, asked by the request's thread while it waits
for the job's events (server.engine.jobs.JobEvents; docs/api.md, Generating: a request nobody waits for never holds
the model)."""
from __future__ import annotations

import math
import socket
import time
from typing import Callable, Mapping, Optional

from core.errors import ErrorCode
from core.hangup import CLOSED, peer_state
from core.wire import TIMEOUT_HEADER

from ..errors import BackendError


class Abandoned(BackendError):
    """Nobody waits for this answer any more: the client hung up, or the time it waits passed."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.BACKEND_TIMEOUT, message, status=504)


class Waiter:
    """The client of one request: its connection, watched for a hang-up, and its deadline, if it gave one."""

    def __init__(self, sock: Optional[socket.socket] = None, timeout_s: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic):
        self._sock = sock
        self._clock = clock
        self._timeout_s = timeout_s
        self._deadline = None if timeout_s is None else clock() + timeout_s

    @classmethod
    def of_request(cls, environ: Mapping, headers: Mapping[str, str]) -> "Waiter":
        """The waiter of a WSGI request: gunicorn's client socket, and the deadline of TIMEOUT_HEADER."""
        return cls(environ.get("gunicorn.socket"), _seconds(headers.get(TIMEOUT_HEADER)))

    def answering(self) -> None:
        """The answer began (a stream's first event is out): from now on only a hang-up stops it."""
        self._deadline = None

    def check(self) -> None:
        """Return while someone still waits for the answer.

        Raises:
            Abandoned: the client hung up, or its deadline passed.
        """
        if self._deadline is not None and self._clock() >= self._deadline:
            raise Abandoned(f"stopped: no answer within the {self._timeout_s:g} s the client waits "
                            f"({TIMEOUT_HEADER})")
        if self._sock is not None and peer_state(self._sock) == CLOSED:
            raise Abandoned("stopped: the client closed its connection")


def _seconds(value: Optional[str]) -> Optional[float]:
    """A positive number of seconds, or None for a header that is absent or not one."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds > 0 else None
