"""Retention: what MODELS_DIR holds against MODELS_MAX_BYTES, evicting least-recently-used models to make
room, models past MODELS_TTL_DAYS, and week-old quarantine.

A model (all files of one model id) is never evicted while it is protected (declared: the caller says which,
see `protected`), being pulled or pushed (a job of this process, or any process holding a file's lock), or in flight
(the backend is answering a request for it).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable

from core import naming
from core.prompt_cache_dir import cache_bytes, reclaim
from proxy.models_dir.staging import PARTIAL_SUFFIX, STAGING
from proxy.models_dir.store import QUARANTINE, ModelStore
from proxy.models_dir.usage import UsageLog

log = logging.getLogger(__name__)
DAY_S = 24 * 3600.0
QUARANTINE_MAX_AGE_S = 7 * DAY_S


@dataclass(frozen=True)
class Installed:
    """One model's installed files, as eviction sees them."""

    model_id: str
    filenames: tuple[str, ...]
    size: int
    last_used: float  # epoch seconds: last request, else install time


class Retention:
    def __init__(self, store: ModelStore, usage: UsageLog, max_bytes: int | None = None,
                 ttl_days: float | None = None, *, protected: Callable[[str], bool] = lambda filename: False,
                 in_flight: Callable[[], set[str]] = set, pulling: Callable[[], set[str]] = set,
                 on_evict: Callable[[str, str], None] = lambda filename, reason: None):
        self.store, self.usage = store, usage
        self.max_bytes, self.ttl_days = max_bytes, ttl_days
        self.protected, self.in_flight, self.pulling = protected, in_flight, pulling
        self.on_evict = on_evict  # (filename, reason: "room" or "ttl") for the metric

    def used_bytes(self) -> int:
        """Installed model files, staging files and the backend's prompt cache; not the small metadata."""
        installed = sum(_size(self.store.final_path(f)) for f in self.store.installed_files())
        installed += cache_bytes(self.store.root)
        # The .partial files only: their progress notes are the small metadata. Allocated, as parts of a
        # ranged download are written sparse.
        return installed + sum(allocated_bytes(p) for p in (self.store.root / STAGING).glob(f"*{PARTIAL_SUFFIX}"))

    def room_bytes(self) -> int:
        """What a pull may add now: the volume's free space, and what MODELS_MAX_BYTES leaves."""
        free = self.store.free_bytes()
        return free if self.max_bytes is None else min(free, self.max_bytes - self.used_bytes())

    def evictable(self, keep: Iterable[str] = ()) -> list[Installed]:
        """Models that may go, least recently used first: none whose file a lock holds (a pull or a push in
        any process), so what make_room counts on freeing is what it can free."""
        keep, busy, pulling = set(keep), self.in_flight(), self.pulling()
        return [model for model in self._models() if not any(
            name in keep or name in busy or name in pulling or self.protected(name) or self.store.held(name)
            for name in model.filenames)]

    def make_room(self, shortfall_bytes: int, keep: Iterable[str] = ()) -> list[str]:
        """Evict least-recently-used models until `shortfall_bytes` are freed; none when all that may go
        would not be enough (a pull that cannot fit anyway removes nobody's model). The files evicted. The
        backend's prompt cache goes first: it is only a saving of time."""
        shortfall_bytes -= reclaim_prompt_cache(self.store.root, shortfall_bytes)
        if shortfall_bytes <= 0:
            return []
        candidates = self.evictable(keep)
        if sum(model.size for model in candidates) < shortfall_bytes:
            return []
        evicted, freed = [], 0
        for model in candidates:
            if freed >= shortfall_bytes:
                break
            if self._evict(model, "room", "a pull needs room"):
                evicted += model.filenames
                freed += model.size
        return evicted

    def sweep(self, now: float | None = None) -> list[str]:
        """Evict models unused for MODELS_TTL_DAYS, and remove week-old quarantine; the files removed."""
        now = time.time() if now is None else now
        removed = _sweep_quarantine(self.store, now - QUARANTINE_MAX_AGE_S)
        if self.ttl_days is not None:
            cutoff, why = now - self.ttl_days * DAY_S, f"unused for over {self.ttl_days:g} days"
            for model in self.evictable():
                if model.last_used < cutoff and self._evict(model, "ttl", why):
                    removed += model.filenames
        return removed

    def _evict(self, model: Installed, reason: str, why: str) -> bool:
        """Delete a model's files under their locks, unless a pull or a push holds one."""
        if not self.store.delete_unless_busy(list(model.filenames)):
            return False
        self.usage.forget(model.filenames)
        for name in model.filenames:
            self.on_evict(name, reason)
        log.info("evicted %s (%s), %d bytes, last used %s: %s", model.model_id, ", ".join(model.filenames),
                 model.size, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(model.last_used)), why)
        return True

    def _models(self) -> list[Installed]:
        records, used = self.store.provenance.all(), self.usage.last_used()
        groups: dict[str, list[str]] = {}
        for filename in self.store.installed_files():
            groups.setdefault(naming.model_id(filename), []).append(filename)
        models = []
        for model_id, names in groups.items():
            paths = [self.store.final_path(name) for name in names]
            when = max((used.get(name) or _pulled_at(records.get(name)) or _mtime(path))
                       for name, path in zip(names, paths))
            models.append(Installed(model_id, tuple(names), sum(_size(p) for p in paths), when))
        return sorted(models, key=lambda model: model.last_used)


def reclaim_prompt_cache(root: os.PathLike, shortfall_bytes: int) -> int:
    """Remove the backend's least recently used prompt cache entries (docs/api.md, Prompt cache) until
    `shortfall_bytes` are freed or none is left; the bytes freed."""
    held = cache_bytes(root)
    freed = reclaim(root, max(0, held - shortfall_bytes)) if held and shortfall_bytes > 0 else 0
    if freed:
        log.info("removed %d bytes of the prompt cache to make room", freed)
    return freed


def _sweep_quarantine(store: ModelStore, cutoff: float) -> list[str]:
    """Quarantined files older than `cutoff` (store.quarantine dates them when it moves them there)."""
    removed = []
    for path in sorted((store.root / QUARANTINE).glob("*")):
        if path.is_file() and _mtime(path) < cutoff:
            path.unlink(missing_ok=True)
            removed.append(path.name)
            log.info("removed %s from quarantine: there for over a week", path.name)
    return removed


def _pulled_at(record) -> float | None:
    if record is None:
        return None
    try:  # ISO 8601 with its offset, as provenance writes it
        return datetime.fromisoformat(record.pulled_at).timestamp()
    except (TypeError, ValueError):
        return None


def _size(path: os.PathLike) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def allocated_bytes(path: os.PathLike) -> int:
    """Disk blocks a file holds (a sparse file: fewer than its size); 0 when it is gone."""
    try:
        return os.lstat(path).st_blocks * 512
    except OSError:
        return 0


def _mtime(path: os.PathLike) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0
