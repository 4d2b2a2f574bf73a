"""Which HF_MIRRORS to skip: a mirror that failed, answered what does not parse, stalled or asked to wait longer
than a pull waits is skipped by every pull for MIRROR_COOLDOWN_S, so only the first pull behind a bad mirror
pays for finding out, and that pull at most about `timeout_s` or `busy_wait_s` (docs/api.md, Serving peers)."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)


class MirrorHealth:
    """Mirrors by `host:port` (as RemoteFile.source_host names them) and until when each is skipped."""

    def __init__(self, cooldown_s: float = 60.0, timeout_s: float = 3.0, busy_wait_s: float = 6.0,
                 clock: Callable[[], float] = time.monotonic):
        self.cooldown_s, self.timeout_s, self.busy_wait_s = cooldown_s, timeout_s, busy_wait_s
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def cooling(self, host: str | None) -> bool:
        """Whether `host` is a mirror every pull skips now."""
        if host is None:
            return False
        with self._lock:
            until = self._until.get(host)
            if until is not None and until <= self._clock():
                del self._until[host]
                return False
            return until is not None

    def failed(self, host: str | None, why: str) -> None:
        """`host` failed a pull (why: a code, never a message with a URL): skip it for the cooldown."""
        if host is None or self.cooldown_s <= 0:
            return
        with self._lock:
            fresh = host not in self._until
            self._until[host] = self._clock() + self.cooldown_s
        if fresh:
            log.warning("mirror %s failed (%s); every pull skips it for %.0f s (MIRROR_COOLDOWN_S)", host, why,
                        self.cooldown_s)
