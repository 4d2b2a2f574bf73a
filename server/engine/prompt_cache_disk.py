"""The prompt cache's tier on MODELS_DIR (docs/api.md, Prompt cache): one file an entry, so a restarted
backend, or a model loaded again, starts warm.

A file is a fixed header (magic, format version, the model key's digest, flags, token count, state length,
sha256 of what follows), the prefix's tokens (int32) and llama.cpp's sequence state. It is written to a
temporary name, fsynced and renamed, so a reader sees a whole file or none; a file that does not match its
header, its key or its checksum is removed with a log line and never handed to llama.cpp.
"""
from __future__ import annotations

import array
import hashlib
import logging
import os
import queue
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core.prompt_cache_dir import ENTRY_SUFFIX, cache_root, reclaim

log = logging.getLogger(__name__)
MAGIC = b"GGPCKV\x00\x00"
VERSION = 1
_HEADER = struct.Struct("<8sI32sIIQ32s")  # magic, version, key digest, flags, n_tokens, state bytes, sha256
_EXACT = 1  # flag: the state is valid only at its full length (sliding-window or recurrent layers)


@dataclass(frozen=True)
class DiskEntry:
    """What the index knows of a file without reading its state."""

    path: Path
    tokens: tuple[int, ...]
    exact: bool
    size: int


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class DiskTier:
    """Entries under MODELS_DIR/.prompt-cache/<model key>/, within `max_bytes` (least recently used out)."""

    def __init__(self, models_dir: str, max_bytes: int):
        self.models_dir = models_dir
        self.max_bytes = max_bytes
        self._index: dict[str, dict[Path, DiskEntry]] = {}
        self._lock = threading.RLock()  # _drop takes it again while entries() reads the index
        self._queue: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None  # started by the first entry evicted from memory

    def folder(self, key: str) -> Path:
        return cache_root(self.models_dir) / key_digest(key).hex()[:32]

    def entries(self, key: str) -> list[DiskEntry]:
        """The files of model `key`, their headers read once (a bad one is dropped)."""
        with self._lock:
            known = self._index.get(key)
            if known is None:
                known = self._index[key] = {}
                for path in sorted(self.folder(key).glob(f"*{ENTRY_SUFFIX}")):
                    entry = self._read_index(key, path)
                    if entry is not None:
                        known[path] = entry
            return list(known.values())

    def bytes_held(self) -> int:
        with self._lock:
            return sum(e.size for known in self._index.values() for e in known.values())

    def write_later(self, key: str, tokens: Sequence[int], exact: bool, state: bytes) -> None:
        """Queue an entry for the writer thread (the engine's loop never waits on the disk)."""
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_queued, name="prompt-cache-writer", daemon=True)
                self._writer.start()
        self._queue.put((key, tuple(tokens), exact, state))

    def drain(self) -> None:
        """Wait until every queued entry is written."""
        self._queue.join()

    def write(self, key: str, tokens: Sequence[int], exact: bool, state: bytes) -> None:
        """Write one entry atomically, then trim the folder to `max_bytes`."""
        folder = self.folder(key)
        body = array.array("i", tokens).tobytes() + state
        header = _HEADER.pack(MAGIC, VERSION, key_digest(key), _EXACT if exact else 0, len(tokens), len(state),
                              hashlib.sha256(body).digest())
        path = folder / (hashlib.sha256(key_digest(key) + body[:4 * len(tokens)]).hexdigest()[:32] + ENTRY_SUFFIX)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as f:
                f.write(header)
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, path)
        except OSError as err:
            log.warning("could not write a prompt cache entry of %d tokens: %s", len(tokens), err)
            temp.unlink(missing_ok=True)
            return
        with self._lock:
            self._index.setdefault(key, {})[path] = DiskEntry(path, tuple(tokens), exact, _HEADER.size + len(body))
        self.trim()

    def trim(self) -> None:
        """Remove least recently used files past `max_bytes`; forget the removed ones."""
        if reclaim(self.models_dir, self.max_bytes):
            with self._lock:
                for known in self._index.values():
                    for path in [p for p in known if not p.exists()]:
                        del known[path]

    def read(self, key: str, entry: DiskEntry) -> bytes | None:
        """The state of `entry`, checked against its header, key and checksum; None (file removed) if bad."""
        try:
            with open(entry.path, "rb") as f:
                data = f.read()
        except OSError as err:
            return self._drop(key, entry.path, f"unreadable ({err.strerror})")
        problem = _check(data, key)
        if problem is not None:
            return self._drop(key, entry.path, problem)
        try:
            os.utime(entry.path)  # read: least recently used last
        except OSError:
            pass
        return data[_HEADER.size + 4 * len(entry.tokens):]

    def _read_index(self, key: str, path: Path) -> DiskEntry | None:
        try:
            size = path.stat().st_size
            with open(path, "rb") as f:
                head = f.read(_HEADER.size)
                magic, version, digest, flags, n_tokens, n_state, _ = _unpack(head)
                tokens = array.array("i")
                tokens.frombytes(f.read(4 * n_tokens))
        except (OSError, ValueError, struct.error) as err:
            return self._drop(key, path, f"unreadable header ({err})")
        if magic != MAGIC or version != VERSION or digest != key_digest(key):
            return self._drop(key, path, "another format or another model's")
        if size != _HEADER.size + 4 * n_tokens + n_state or len(tokens) != n_tokens:
            return self._drop(key, path, "truncated")
        return DiskEntry(path, tuple(tokens), bool(flags & _EXACT), size)

    def _drop(self, key: str, path: Path, why: str) -> None:
        log.warning("prompt cache entry %s dropped: %s", path.name, why)
        path.unlink(missing_ok=True)
        with self._lock:
            self._index.get(key, {}).pop(path, None)
        return None

    def _write_queued(self) -> None:
        while True:
            item = self._queue.get()
            try:
                self.write(*item)
            except Exception:  # the writer must outlive one bad entry
                log.exception("writing a prompt cache entry failed")
            finally:
                self._queue.task_done()


def _unpack(head: bytes) -> tuple:
    if len(head) != _HEADER.size:
        raise ValueError("short header")
    return _HEADER.unpack(head)


def _check(data: bytes, key: str) -> str | None:
    """What is wrong with a whole file's bytes for model `key`; None when nothing is."""
    try:
        magic, version, digest, _, n_tokens, n_state, checksum = _unpack(data[:_HEADER.size])
    except (ValueError, struct.error):
        return "truncated header"
    if magic != MAGIC or version != VERSION:
        return "another format"
    if digest != key_digest(key):
        return "another model's"
    body = data[_HEADER.size:]
    if len(body) != 4 * n_tokens + n_state:
        return "truncated"
    if hashlib.sha256(body).digest() != checksum:
        return "checksum mismatch"
    return None
