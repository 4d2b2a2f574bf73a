"""Turns byte counts into `downloading` lines, a few a second, over a whole file set."""
from __future__ import annotations

import time
from typing import Callable

from proxy.pulls.events import Downloading
from proxy.pulls.jobs import PullJob


class ProgressReporter:
    def __init__(self, job: PullJob, total_bytes: int, interval_s: float):
        self.job, self.total_bytes, self.interval_s = job, total_bytes, interval_s
        self._base = 0  # bytes of the files already finished
        self._last_at = 0.0

    def skip(self, size: int) -> None:
        self._base += size

    def file_callback(self, filename: str) -> Callable[[int], None]:
        def report(completed: int) -> None:
            now = time.monotonic()
            if now - self._last_at >= self.interval_s:
                self._last_at = now
                self._publish(filename, self._base + completed)
        return report

    def file_done(self, filename: str, size: int) -> None:
        self._base += size
        self._publish(filename, self._base)

    def _publish(self, filename: str, completed: int) -> None:
        percent = round(100.0 * completed / self.total_bytes, 2) if self.total_bytes else 100.0
        self.job.publish(Downloading(filename, completed, self.total_bytes, percent))
