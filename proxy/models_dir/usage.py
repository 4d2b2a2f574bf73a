"""When each installed model was last named by a request, and which ones the backend is answering for now.

Last-used times are kept in memory and written in batches (every flush interval and at shutdown), so a
forwarded request never waits on a disk write; a restart loses at most the last interval. The file is
merged, not overwritten, under the provenance lock: replicas sharing MODELS_DIR each add their own times.
"""
from __future__ import annotations

import collections
import contextlib
import datetime
import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from proxy.models_dir.fsutil import file_lock, write_json_atomically

log = logging.getLogger(__name__)


class UsageLog:
    """Last-used times (epoch seconds) by installed file name."""

    def __init__(self, path: Path, lock_path: Path, clock: Callable[[], float] = time.time):
        self.path, self._lock_path, self._clock = path, lock_path, clock
        self._pending: dict[str, float] = {}
        self._mutex = threading.Lock()

    def touch(self, filenames: Iterable[str]) -> None:
        """Remember that a request named these files now; written at the next flush."""
        now = float(int(self._clock()))  # to the second, as the contract shows it
        with self._mutex:
            for name in filenames:
                self._pending[name] = now

    def last_used(self) -> dict[str, float]:
        """What the file says, with this process's unflushed times on top."""
        times = self._read()
        with self._mutex:
            for name, when in self._pending.items():
                times[name] = max(when, times.get(name, 0.0))
        return times

    def flush(self) -> None:
        """Merge this process's times into the file (the newer time wins)."""
        with self._mutex:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            with file_lock(self._lock_path):
                times = self._read()
                for name, when in pending.items():
                    times[name] = max(when, times.get(name, 0.0))
                write_json_atomically(self.path, {"last_used": times}, indent=1)
        except OSError:
            log.warning("could not write last-used times to %s; kept for the next flush", self.path)
            with self._mutex:
                for name, when in pending.items():
                    self._pending[name] = max(when, self._pending.get(name, 0.0))

    def forget(self, filenames: Iterable[str]) -> None:
        """Drop the times of removed files, so that a file pulled again under the name starts afresh."""
        names = set(filenames)
        with self._mutex:
            for name in names:
                self._pending.pop(name, None)
        with file_lock(self._lock_path):
            times = self._read()
            if names & times.keys():
                write_json_atomically(self.path, {"last_used": {k: v for k, v in times.items() if k not in names}},
                                      indent=1)

    def start_flusher(self, interval_s: float) -> threading.Thread:
        """Flush every `interval_s` in a daemon thread (shutdown flushes once more: see app and gunicorn)."""
        def flush_forever() -> None:
            while True:
                time.sleep(interval_s)
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - the next flush tries again
                    log.exception("flushing last-used times failed")

        thread = threading.Thread(target=flush_forever, name="last-used-flusher", daemon=True)
        thread.start()
        return thread

    def _read(self) -> dict[str, float]:
        try:
            raw = json.loads(self.path.read_text()).get("last_used", {})
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError):
            log.warning("last-used file %s is unreadable; treating it as empty", self.path)
            return {}
        return {k: float(v) for k, v in raw.items() if isinstance(k, str) and isinstance(v, (int, float))}


def iso_seconds(epoch: float | None) -> str | None:
    """An epoch time as the contract's ISO 8601 UTC, to the second."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).isoformat(timespec="seconds")


class InFlight:
    """Installed files the proxy has forwarded a request for that the backend has not answered yet.

    The proxy counts its own forwarded requests: it sees every one and its model, so no call to the backend
    is needed, and one proxy worker (gunicorn.conf.py) fronts one backend.
    """

    def __init__(self):
        self._counts: collections.Counter[str] = collections.Counter()
        self._mutex = threading.Lock()

    @contextlib.contextmanager
    def holding(self, filenames: Iterable[str]) -> Iterator[None]:
        release = self.hold(filenames)
        try:
            yield
        finally:
            release()

    def hold(self, filenames: Iterable[str]) -> Callable[[], None]:
        """Count a request for these files; returns the callable that ends it (idempotent)."""
        names = list(filenames)
        with self._mutex:
            self._counts.update(names)
        done = threading.Event()

        def release() -> None:
            if done.is_set():
                return
            done.set()
            with self._mutex:
                self._counts.subtract(names)
                for name in names:
                    if self._counts[name] <= 0:
                        del self._counts[name]
        return release

    def busy(self) -> set[str]:
        with self._mutex:
            return set(self._counts)
