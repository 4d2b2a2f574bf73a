"""Staging no pull owns: reclaimed when a pull needs room, and swept by age at start and hourly.

A staging file is owned while a process holds its name's lock (a pull is running) or a resume note
in .proxy/pending names it (a pull a shutdown stopped, resumed at the next start). Whatever else
lies in .staging was left by a failed or abandoned pull: its resume is lost, its blocks are dead.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from core import naming
from proxy.models_dir.store import NAME_MAX_BYTES, RECORD_SUFFIX_BYTES, ModelStore

log = logging.getLogger(__name__)
# The staging layout, shared by the pulls that write it (proxy/pulls/install.py) and what reclaims it.
STAGING = ".staging"
PARTIAL_SUFFIX = ".partial"  # <name>.partial: the bytes of a download
PROGRESS_SUFFIX = ".json"  # <name>.partial.json beside it: what a resume needs (see transfer_state.py)
# The longest file name a pull takes: what fits once the store or the staging adds its suffix.
MAX_FILENAME_BYTES = NAME_MAX_BYTES - max(len(PARTIAL_SUFFIX + PROGRESS_SUFFIX), RECORD_SUFFIX_BYTES)
MAX_AGE_S = 24 * 3600.0
SWEEP_INTERVAL_S = 3600.0


@dataclass(frozen=True)
class Leftover:
    """The files staging one model file: its .partial, progress note and any temporary copy."""

    filename: str
    paths: tuple[Path, ...]
    allocated_bytes: int
    modified: float  # the newest change to any of them


def find_leftovers(store: ModelStore) -> list[Leftover]:
    """Staging that no resume note names, oldest first (a running pull's lock is checked on removal)."""
    groups: dict[str, list[Path]] = {}
    for path in sorted((store.root / STAGING).glob("*")):
        groups.setdefault(path.name.rpartition(PARTIAL_SUFFIX)[0] or path.name, []).append(path)
    noted = _noted_is_noted(store)
    leftovers = [_describe(name, paths) for name, paths in groups.items() if not _is_noted(noted, name)]
    return sorted((leftover for leftover in leftovers if leftover), key=lambda leftover: leftover.modified)


def reclaim_staging(store: ModelStore, shortfall_bytes: int, keep: frozenset[str] = frozenset()) -> int:
    """Remove dead staging, oldest first, until `shortfall_bytes` are free; none of it when all of it would
    not be enough (a pull that cannot fit anyway takes nobody's resume). Returns the bytes freed."""
    candidates = [leftover for leftover in find_leftovers(store) if leftover.filename not in keep]
    if sum(leftover.allocated_bytes for leftover in candidates) < shortfall_bytes:
        return 0
    freed = 0
    for leftover in candidates:
        if freed >= shortfall_bytes:
            break
        if _remove_unowned(store, leftover, "a pull needs room"):
            freed += leftover.allocated_bytes
    return freed


def sweep_staging(store: ModelStore, max_age_s: float = MAX_AGE_S) -> list[str]:
    """Remove dead staging untouched for `max_age_s`; returns the file names it staged."""
    cutoff, why = time.time() - max_age_s, f"untouched for over {max_age_s / 3600:g} hours"
    return [leftover.filename for leftover in find_leftovers(store)
            if leftover.modified < cutoff and _remove_unowned(store, leftover, why)]


def start_staging_sweeper(store: ModelStore, interval_s: float = SWEEP_INTERVAL_S,
                          also: Sequence[Callable[[], object]] = ()) -> threading.Thread:
    """Sweep now, then every `interval_s` in a daemon thread; `also`: more sweeps run with it (retention)."""
    sweeps = (lambda: sweep_staging(store), *also)

    def sweep_all() -> None:
        for sweep in sweeps:
            try:
                sweep()
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.exception("sweeping %s failed", store.root)

    sweep_all()

    def sweep_forever() -> None:
        while True:
            time.sleep(interval_s)
            sweep_all()

    thread = threading.Thread(target=sweep_forever, name="staging-sweeper", daemon=True)
    thread.start()
    return thread


def _remove_unowned(store: ModelStore, leftover: Leftover, why: str) -> bool:
    """Remove a leftover under its name's lock, unless a pull holds that lock or a note names it by now."""
    with store.lock(leftover.filename, blocking=False) as acquired:
        if not acquired or _is_noted(_noted_is_noted(store), leftover.filename):
            return False
        for path in leftover.paths:
            path.unlink(missing_ok=True)
    log.info("removed the staging of %s, %d bytes: no pull owns it, %s", leftover.filename,
             leftover.allocated_bytes, why)
    return True


def _describe(filename: str, paths: list[Path]) -> Leftover | None:
    stats = []
    for path in paths:
        try:
            stats.append(path.lstat())
        except FileNotFoundError:  # removed meanwhile (installed, or by another process)
            continue
    if not stats:
        return None
    return Leftover(filename, tuple(paths), sum(stat.st_blocks * 512 for stat in stats),
                    max(stat.st_mtime for stat in stats))


def _noted_is_noted(store: ModelStore) -> list[str]:
    return [naming.basename(str(body.get("filename") or "")) for body in store.intents()]


def _is_noted(noted: list[str], filename: str) -> bool:
    """Whether a resume note names `filename`; a note of a split set names every part of it."""
    part = naming.split_part(filename)
    for name in noted:
        other = naming.split_part(name)
        if name == filename or (part and other and (part.base, part.count) == (other.base, other.count)):
            return True
    return False
