"""Resumable download of one file over parallel ranged HTTP requests into a staging file.

The file is cut into parts of `chunk_bytes`; up to `connections` workers fetch parts in order, each
resuming its part where it stopped. The bytes done in each part are saved beside the staging file,
so a restarted process resumes every part. The sha256 follows the contiguous prefix as parts
complete, so only the last few parts are left to hash when the final byte lands, and written bytes are
handed to the disk as they come, so the closing fsync has little left to flush.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import requests
import urllib3

from proxy.errors import ErrorCode, ProxyError, disk_full_is_insufficient_storage
from proxy.models_dir.fsutil import start_writeback
from proxy.sources.remote import Fetch
from proxy.pulls.transfer_state import PartsState
from proxy.pulls.verify import check_served_size, digest_hasher
from proxy.retry import PULL_PROGRESS_HEADER, Backoff, BusyWait, parse_progress, parse_retry_after

log = logging.getLogger(__name__)
READ_BYTES = 1024 * 1024
HASH_READ_BYTES = 4 * 1024 * 1024
WRITEBACK_BYTES = 8 * 1024 * 1024  # written bytes handed to the disk as they come, so the closing fsync is short
SAVE_INTERVAL_S = 1.0
TICK_S = 0.1


@dataclass(frozen=True)
class TransferOptions:
    connections: int = 8
    chunk_bytes: int = 16 * 1024 * 1024
    stall_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_retries: int = 6
    backoff: Backoff = field(default_factory=Backoff)
    # A stall ends the transfer even after bytes came (a mirror with a source after it: a mirror that trickles a
    # little and stalls again would otherwise hold the pull for ever, each attempt having gained something).
    stall_ends: bool = False


class TransferCancelled(Exception):
    """The transfer was asked to stop; its progress is saved for a later resume."""


class _NoRangeSupport(Exception):
    """The server answered 200 to a ranged request of a multi-part plan."""


class _RetryableHTTP(Exception):
    def __init__(self, status: int, retry_after_s: float | None = None, progress: int | None = None):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after_s = retry_after_s
        self.progress = progress  # a pull-through peer's PULL_PROGRESS_HEADER


class Transfer:
    """Fetch `size` bytes as `fetch` says into `dest` (progress saved at `progress_path`, for a resume);
    `run()` returns the hex digest of what arrived, in `digest_algorithm` (the remote file's).

    Which headers a request carries is the fetch's to say (see proxy/sources/remote.py), redirects included.
    """

    def __init__(self, fetch: Fetch, size: int, dest: Path, progress_path: Path, expected_digest: str | None,
                 options: TransferOptions, stop: threading.Event,
                 on_progress: Callable[[int], None] = lambda completed: None,
                 on_bytes: Callable[[int], None] = lambda count: None, busy_wait_s: float = 0.0,
                 digest_algorithm: str = "sha256"):
        self.fetch, self.size, self.dest, self.digest_algorithm = fetch, size, dest, digest_algorithm
        self.busy_wait_s = busy_wait_s  # a mirror's 503 + Retry-After: waited on this long in all, uncounted
        self._busy = BusyWait(busy_wait_s)
        self.options, self.stop, self.on_progress, self.on_bytes = options, stop, on_progress, on_bytes
        # The expected digest keys the saved progress: another file's (or another algorithm's) starts afresh.
        self.state = PartsState.load_or_create(dest, progress_path, size, expected_digest, options.chunk_bytes)
        self._lock = threading.Condition()
        self._pending: list[int] = []
        self._fatal: BaseException | None = None
        self._abort = threading.Event()  # stop or a fatal error: workers leave at once
        self._responses: set[requests.Response] = set()
        self._location: str | None = None  # where the source redirected to (a signed CDN URL), reused by parts
        self._reset_hash()

    def run(self) -> str:
        """Raises: ProxyError (insufficient_storage, hub_unavailable, checksum_mismatch), TransferCancelled."""
        try:
            with disk_full_is_insufficient_storage():  # writing a block or saving progress
                return self._run()
        finally:
            self.state.close()

    def _run(self) -> str:
        try:
            self._run_plan()
        except _NoRangeSupport:
            log.info("server ignores Range for %s; fetching it as one stream", self.dest.name)
            self.state.close()
            self.state = PartsState.create(self.dest, self.state.state_path, self.size, self.state.sha256,
                                           chunk_bytes=self.size)
            self._reset_hash()
            self._run_plan()
        self.state.fsync_and_forget()
        return self._hasher.hexdigest()

    def _reset_hash(self) -> None:
        self._hash_buffer = memoryview(bytearray(HASH_READ_BYTES))  # one buffer, read into again and again
        self._hasher, self._hashed_to = digest_hasher(self.digest_algorithm), 0
        self._hash_generation = self.state.generation

    def _run_plan(self) -> None:
        self._pending = self.state.incomplete_parts()
        self._fatal = None
        self._abort.clear()
        workers = [threading.Thread(target=self._work, name=f"part-{self.dest.name}-{i}", daemon=True)
                   for i in range(min(self.options.connections, len(self._pending)))]
        for worker in workers:
            worker.start()
        try:
            self._follow(workers)
        finally:
            self._abort.set()
            for response in list(self._responses):
                _unblock(response)
            for worker in workers:
                worker.join()
            self.state.save()

    def _follow(self, workers: list[threading.Thread]) -> None:
        """Hash the contiguous prefix and report progress until every part is done or one fails."""
        last_save = time.monotonic()
        while True:
            with self._lock:
                self._lock.wait(TICK_S)
                fatal = self._fatal
            self._hash_prefix()
            self.on_progress(self.state.completed_bytes())
            if fatal is not None:
                raise fatal
            if self.stop.is_set():
                raise TransferCancelled()
            if not any(worker.is_alive() for worker in workers):
                if self.state.is_complete():
                    self._hash_prefix()
                    return
                raise ProxyError(ErrorCode.HUB_UNAVAILABLE, "download ended with parts missing")
            if time.monotonic() - last_save >= SAVE_INTERVAL_S:
                self.state.save()
                last_save = time.monotonic()

    def _hash_prefix(self) -> None:
        if self.state.generation != self._hash_generation:  # a single stream restarted from byte 0
            self._reset_hash()
        prefix = self.state.contiguous_bytes()
        while self._hashed_to < prefix:
            count = os.preadv(self.state.fd, [self._hash_buffer[: prefix - self._hashed_to]], self._hashed_to)
            if not count:
                break
            self._hasher.update(self._hash_buffer[:count])
            self._hashed_to += count

    def _next_part(self) -> int | None:
        with self._lock:
            return self._pending.pop(0) if self._pending and self._fatal is None else None

    def _fail(self, err: BaseException) -> None:
        with self._lock:
            if self._fatal is None:
                self._fatal = err
            self._pending.clear()
            self._abort.set()
            self._lock.notify_all()

    def _work(self) -> None:
        with requests.Session() as session:
            while (index := self._next_part()) is not None:
                try:
                    self._fetch_part(session, index)
                except BaseException as err:  # noqa: BLE001 - handed to the coordinating thread
                    self._fail(err)
                    return
                with self._lock:
                    self._lock.notify_all()

    def _fetch_part(self, session: requests.Session, index: int) -> None:
        failures = 0
        while not self._abort.is_set() and not self.state.part_done(index):
            before = self.state.done[index]
            try:
                self._stream_part(session, index)
                continue
            except (requests.RequestException, _RetryableHTTP) as err:
                if (busy_s := self._busy_delay_s(err)) is not None:
                    log.info("%s: the mirror is busy; asking again in %.1f s", self.dest.name, busy_s)
                    if self._abort.wait(busy_s):
                        return
                    continue
                failures = 0 if self.state.done[index] > before else failures + 1
                reason, retry_after = _describe(err)
                if self.options.stall_ends and isinstance(err, requests.Timeout):
                    raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"the source stalled ({reason})") from err
            if failures >= self.options.max_retries:
                raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"download failed {failures} times in a row ({reason})")
            log.warning("part %d of %s: %s; retry %d/%d", index, self.dest.name, reason, failures,
                        self.options.max_retries)
            if not self.options.backoff.sleep(max(failures, 1), self._abort, retry_after):
                return

    def _busy_delay_s(self, err: BaseException) -> float | None:
        """How long to wait on a 503 with Retry-After (not a failed attempt) while the budget lasts; else None."""
        if not (isinstance(err, _RetryableHTTP) and err.status == 503):
            return None
        return self._busy.delay_s(err.retry_after_s, err.progress)

    def _stream_part(self, session: requests.Session, index: int) -> None:
        start, end = self.state.part_range(index)
        position = start + self.state.done[index]
        url = self._location or self.fetch.url  # once redirected, parts go straight to the signed URL
        headers = {"Range": f"bytes={position}-{end - 1}", "Accept-Encoding": "identity"}
        timeout = (self.options.connect_timeout_s, self.options.stall_timeout_s)
        with self.fetch.get(session, url, headers, timeout) as response:
            self._responses.add(response)
            try:
                position = self._check_response(response, index, position, url)
                flushed = position
                for block in _arrived_blocks(response):
                    if self._abort.is_set():
                        return
                    block = block[: end - position]
                    self._write(block, position)
                    position += len(block)
                    self.state.done[index] = position - start
                    if position - flushed >= WRITEBACK_BYTES or position >= end:
                        start_writeback(self.state.fd, flushed, position - flushed)
                        flushed = position
                    if position >= end:
                        return
            finally:
                self._responses.discard(response)
        if position < end and not self._abort.is_set():
            raise requests.ConnectionError("connection closed before the part was complete")

    def _check_response(self, response: requests.Response, index: int, position: int, url: str) -> int:
        """The position the body starts at; raises for statuses worth a retry.

        Raises:
            ProxyError: checksum_mismatch when the server offers another file than the hub listed.
        """
        start, end = self.state.part_range(index)
        if response.ok and response.url != url and self._location is None:
            self._location = response.url
        if response.status_code == 206:
            first, total = _content_range(response.headers.get("Content-Range"))
            check_served_size(total, self.size, "has")
            if first != position:
                raise _RetryableHTTP(206)
            return position
        if response.status_code == 200:
            length = response.headers.get("Content-Length")
            check_served_size(int(length) if length is not None and length.isdigit() else None, self.size, "sent")
            if len(self.state.done) > 1:
                raise _NoRangeSupport()
            self.state.restart_stream()  # the whole body again: restart the file cleanly
            return start
        if url == self._location and response.status_code in (401, 403, 404, 410):
            self._location = None  # the signed URL expired: ask the hub again
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise _RetryableHTTP(response.status_code, retry_after,
                             parse_progress(response.headers.get(PULL_PROGRESS_HEADER)))

    def _write(self, block: bytes, position: int) -> None:
        os.pwrite(self.state.fd, block, position)  # a full volume: see run()
        self.on_bytes(len(block))


def _unblock(response: requests.Response) -> None:
    """Wake a worker blocked reading a stalled socket: closing alone does not interrupt a blocked recv."""
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        response.raw.shutdown()
    response.close()


def _arrived_blocks(response: requests.Response) -> Iterator[bytes]:
    """The body as it arrives, up to READ_BYTES a block.

    iter_content(n) buffers until it has n bytes, so a connection dropped mid-block loses all it had
    received into that block (and an attempt that brought bytes counts as one that brought none);
    read1 hands on what came, so a drop costs nothing already received.

    Raises:
        requests.Timeout (no byte within the read timeout), requests.ConnectionError (dropped, reset).
    """
    try:
        while block := response.raw.read1(READ_BYTES, decode_content=True):
            yield block
    except urllib3.exceptions.ReadTimeoutError as err:
        raise requests.Timeout(str(err)) from err
    except urllib3.exceptions.HTTPError as err:
        raise requests.ConnectionError(str(err)) from err


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of `bytes a-b/total`; None for what is missing or `*`."""
    try:
        span, _, total = value.split(" ", 1)[1].partition("/")
        first = int(span.split("-", 1)[0])
    except (AttributeError, IndexError, ValueError):
        return None, None
    return first, int(total) if total.isdigit() else None


def _describe(err: BaseException) -> tuple[str, float | None]:
    if isinstance(err, _RetryableHTTP):
        return str(err), err.retry_after_s
    if isinstance(err, requests.Timeout):
        return "stalled: no bytes within the stall timeout", None
    return type(err).__name__, None
