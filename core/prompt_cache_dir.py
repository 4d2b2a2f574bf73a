"""The prompt cache's folder inside MODELS_DIR: its name, what it holds, and how it is trimmed.

The backend writes KV states of prompt prefixes there (server/engine/prompt_cache_disk.py); the proxy's
retention counts the same files against MODELS_MAX_BYTES and reclaims them before any model
(docs/api.md, Prompt cache). Both use these functions, so the two agree on what the folder holds.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
PROMPT_CACHE_DIR = ".prompt-cache"  # hidden: model discovery and listings skip it
ENTRY_SUFFIX = ".kv"
STALE_TEMP_S = 600.0  # a temporary file this old was left by a writer that died (killed past its grace period)


@dataclass(frozen=True)
class CacheFile:
    path: Path
    size: int
    used: float  # mtime: written, or last read (a hit touches it)


def cache_root(models_dir: str | Path) -> Path:
    return Path(models_dir) / PROMPT_CACHE_DIR


def cache_files(models_dir: str | Path) -> list[CacheFile]:
    """Every entry file of the prompt cache, least recently used first."""
    found = []
    for path in cache_root(models_dir).glob(f"*/*{ENTRY_SUFFIX}"):
        try:
            st = path.stat()
        except OSError:  # removed meanwhile
            continue
        found.append(CacheFile(path, st.st_size, st.st_mtime))
    return sorted(found, key=lambda f: f.used)


def cache_bytes(models_dir: str | Path) -> int:
    return sum(f.size for f in cache_files(models_dir))


def reclaim(models_dir: str | Path, max_bytes: int) -> int:
    """Remove least recently used entries until the cache holds at most `max_bytes`, and writers' temporary
    files left behind; the bytes freed."""
    _remove_stale_temp_files(models_dir)
    files = cache_files(models_dir)
    held, freed = sum(f.size for f in files), 0
    for f in files:
        if held - freed <= max_bytes:
            break
        try:
            os.unlink(f.path)
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning("could not remove prompt cache entry %s: %s", f.path.name, err)
            continue
        freed += f.size
    return freed


def _remove_stale_temp_files(models_dir: str | Path) -> None:
    cutoff = time.time() - STALE_TEMP_S
    for path in cache_root(models_dir).glob("*/.*.tmp"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:  # removed meanwhile
            continue
