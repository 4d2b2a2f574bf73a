"""Small files in MODELS_DIR, shared by every process on the volume: atomic JSON writes and file locks."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import Iterator

# Temporary names keep this much of the final name (for a person reading the folder), so they stay short
# however long the final name is.
_TMP_PREFIX_BYTES = 32


def write_json_atomically(path: Path, data, durable: bool = False, indent: int | None = None) -> None:
    """Write `data` to a temporary name of its own, then rename it over `path`.

    The temporary name is unique, so processes writing the same file at once never take each other's
    temporary file away; the last rename wins. `durable` also fsyncs the file and the rename, for records
    that must survive a power cut, not only a killed process (progress notes, rewritten every second, skip it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    short_name = path.name.encode()[:_TMP_PREFIX_BYTES].decode(errors="ignore")
    tmp = path.with_name(f".{short_name}.{secrets.token_hex(6)}.tmp")
    # O_EXCL: never another writer's file; the mode is what open() gives, less the umask.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, indent=indent))
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def _sync_file_range():
    """libc's sync_file_range (Linux), or None where there is none."""
    with contextlib.suppress(OSError, AttributeError):
        function = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sync_file_range
        function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        return function
    return None


_SYNC_FILE_RANGE = _sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing [offset, offset + length) of `fd` to disk, without waiting.

    A download that does this as it goes leaves its closing fsync little to flush; that fsync still says
    whether the bytes reached the disk, so a failure here is not an error.
    """
    if _SYNC_FILE_RANGE is not None and length > 0:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True, shared: bool = False, remove: bool = False) -> Iterator[bool]:
    """An exclusive flock on `path` (created if missing) for the block, or a shared one that only excludes
    exclusive holders: yields False, holding nothing, when `blocking` is off and another holder excludes it.
    Threads and processes exclude each other alike, since each call opens the file anew.

    `remove`: the last holder unlinks the file before letting go (a shared one when it can turn its lock
    exclusive at once, so nobody else holds it), so names tried once leave no file behind. Every locker
    checks, once it holds the lock, that the path still names the file it locked (a holder may have removed
    it meanwhile) and starts again on the new file if not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            if not _still_names(path, fd):
                continue  # removed (and perhaps made anew) while we waited: lock what the path names now
            try:
                yield True
            finally:
                if remove and _sole_holder(fd, shared):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)
            return
        finally:
            os.close(fd)


def _sole_holder(fd: int, shared: bool) -> bool:
    if not shared:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # others share it still: the last of them removes it
    return True


def _still_names(path: Path, fd: int) -> bool:
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)
