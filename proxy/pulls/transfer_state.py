"""A staging file cut into parts, and the bytes done in each part, saved beside it for resuming."""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from pathlib import Path

from proxy.errors import disk_full_is_insufficient_storage
from proxy.models_dir.fsutil import write_json_atomically

log = logging.getLogger(__name__)


class PartsState:
    """Open staging file plus per-part progress. `done[i]` only ever counts bytes already written."""

    def __init__(self, dest: Path, state_path: Path, size: int, sha256: str | None, chunk_bytes: int,
                 done: list[int], fd: int):
        self.dest, self.state_path = dest, state_path
        self.size, self.sha256, self.chunk_bytes = size, sha256, chunk_bytes
        self.done = done
        self.fd = fd
        self.generation = 0  # bumped when a single stream restarts from byte 0

    @classmethod
    def load_or_create(cls, dest: Path, state_path: Path, size: int, sha256: str | None,
                       chunk_bytes: int) -> "PartsState":
        """Resume what an earlier run left for the same bytes (progress saved at `state_path`), or start a
        fresh staging file.

        Raises:
            ProxyError: insufficient_storage when the file cannot be allocated.
        """
        saved = _read_saved(state_path)
        if saved and saved.get("size") == size and saved.get("sha256") == sha256 and _fits(dest, size):
            chunk, done = saved["chunk_bytes"], saved["done"]
            if len(done) == _part_count(size, chunk) and all(0 <= d <= chunk for d in done):
                fd = os.open(dest, os.O_RDWR)
                log.info("resuming %s at %d of %d bytes", dest.name, sum(done), size)
                return cls(dest, state_path, size, sha256, chunk, list(done), fd)
        return cls.create(dest, state_path, size, sha256, chunk_bytes)

    @classmethod
    def create(cls, dest: Path, state_path: Path, size: int, sha256: str | None, chunk_bytes: int) -> "PartsState":
        """Raises: ProxyError insufficient_storage."""
        chunk_bytes = max(1, min(chunk_bytes, size or 1))
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        state = cls(dest, state_path, size, sha256, chunk_bytes, [0] * _part_count(size, chunk_bytes), fd)
        try:
            _allocate(fd, size)
            state.save()
        except BaseException:  # nothing to resume: leave no allocated file behind
            state.close()
            dest.unlink(missing_ok=True)
            raise
        return state

    def part_range(self, index: int) -> tuple[int, int]:
        start = index * self.chunk_bytes
        return start, min(start + self.chunk_bytes, self.size)

    def part_done(self, index: int) -> bool:
        start, end = self.part_range(index)
        return self.done[index] >= end - start

    def incomplete_parts(self) -> list[int]:
        return [i for i in range(len(self.done)) if not self.part_done(i)]

    def is_complete(self) -> bool:
        return not self.incomplete_parts()

    def completed_bytes(self) -> int:
        return sum(self.done)

    def contiguous_bytes(self) -> int:
        total = 0
        for index, done in enumerate(self.done):
            total += done
            if not self.part_done(index):
                break
        return total

    def restart_stream(self) -> None:
        self.done[0] = 0
        self.generation += 1

    def save(self) -> None:
        """Write the progress atomically; a crash mid-write leaves the previous copy."""
        data = {"size": self.size, "sha256": self.sha256, "chunk_bytes": self.chunk_bytes, "done": list(self.done)}
        write_json_atomically(self.state_path, data)

    def fsync_and_forget(self) -> None:
        """The bytes are all there: flush them to disk and drop the progress record."""
        os.fsync(self.fd)
        self.close()
        self.state_path.unlink(missing_ok=True)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def _part_count(size: int, chunk_bytes: int) -> int:
    return max(1, -(-size // chunk_bytes))


def _fits(dest: Path, size: int) -> bool:
    try:
        return dest.stat().st_size == size
    except OSError:
        return False


def _read_saved(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("done"), list):
        return None
    if not isinstance(data.get("chunk_bytes"), int) or data["chunk_bytes"] <= 0:
        return None
    if not all(isinstance(d, int) for d in data["done"]):
        return None
    return data


def _allocate(fd: int, size: int) -> None:
    """Reserve the file's blocks now, so a full volume fails before the download, not in its middle."""
    try:
        with disk_full_is_insufficient_storage("not enough free space in MODELS_DIR for this file"):
            os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, size)
