"""Exponential backoff with jitter, shared by the hub client and the transfer code."""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass


# A mirror answering 503 with Retry-After is busy (a pull-through peer fetching the file for us): waited on, not
# counted as a failed attempt, each wait capped at BUSY_WAIT_STEP_S and BUSY_WAIT_MAX_S in all per file.
BUSY_WAIT_STEP_S = 30.0
BUSY_WAIT_MAX_S = 600.0


@dataclass(frozen=True)
class Backoff:
    base_s: float = 1.0
    max_s: float = 30.0

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Delay before retry number `attempt` (1-based): full jitter over base*2^(n-1), or Retry-After."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_s)
        ceiling = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def sleep(self, attempt: int, stop: threading.Event, retry_after_s: float | None = None) -> bool:
        """Wait before the next attempt; False when `stop` was set meanwhile."""
        return not stop.wait(self.delay_s(attempt, retry_after_s))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (the delay form; HTTP dates are ignored)."""
    if not value:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None
