"""Exponential backoff with jitter, shared by the hub client and the transfer code."""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass


# A mirror answering 503 with Retry-After is busy (a pull-through peer fetching the file for us): waited on, not
# counted as a failed attempt, each wait capped at BUSY_WAIT_STEP_S and BUSY_WAIT_MAX_S in all per file.
BUSY_WAIT_STEP_S = 30.0
BUSY_WAIT_MAX_S = 600.0
# On a pull-through peer's 503: the bytes its own pull of the file has so far. While it grows the peer is
# fetching the file for us, not stuck, and the asker keeps waiting (a fleet then fetches each file once).
PULL_PROGRESS_HEADER = "X-Pull-Progress"


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


class BusyWait:
    """How long a pull keeps waiting on a source that answers 503 + Retry-After (a peer pulling the file
    through): `budget_s` in all, counted afresh whenever the peer says its own pull holds more bytes
    (PULL_PROGRESS_HEADER), so a peer that is fetching the file is waited on and a stuck or merely busy one
    costs at most the budget."""

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self._waited_s = 0.0
        self._progress = -1
        self._lock = threading.Lock()

    def delay_s(self, retry_after_s: float | None, progress: int | None) -> float | None:
        """The wait before asking again, or None when the answer is not one to wait on or the budget is spent."""
        if retry_after_s is None:
            return None
        delay_s = min(max(retry_after_s, 0.1), BUSY_WAIT_STEP_S)
        with self._lock:
            if progress is not None and progress > self._progress:
                self._progress, self._waited_s = progress, 0.0
            if self._waited_s + delay_s > self.budget_s:
                return None
            self._waited_s += delay_s
        return delay_s


def parse_progress(value: str | None) -> int | None:
    """PULL_PROGRESS_HEADER's byte count, or None."""
    return int(value) if value and value.isdigit() else None
