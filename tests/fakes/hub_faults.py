"""Fault knobs and the request log of the fake Hub."""
from __future__ import annotations

import fnmatch
import threading
import time
from dataclasses import dataclass, field, replace

# Where a fault applies. "content": responses that carry a file's bytes (the CDN for LFS files, /resolve
# for small git files); "resolve": the /resolve endpoint (HEAD and GET, the 302 included); "cdn": the CDN
# path only; "api": /api/...; "any": every request.
PLACES = ("content", "resolve", "cdn", "api", "any")
BODY_FAULTS = ("drop", "reset", "stall", "wrong_bytes", "ignore_range")


@dataclass
class Fault:
    """One scripted misbehaviour; `times` responses get it (None: every response, forever)."""

    kind: str
    times: int | None = 1
    after_bytes: int = 0  # drop / reset / stall: body bytes sent first
    seconds: float | None = None  # stall / hang: how long; None = until the hub stops or release_stalls()
    code: int = 503  # status: the HTTP status answered
    retry_after: str | None = None  # status: Retry-After header value
    from_offset: int = 0  # wrong_bytes: file offset from which served bytes are inverted
    fired: int = 0  # how many responses got it so far
    # Matching, set by FaultBook.add:
    repo: str | None = None
    file: str | None = None
    path: str | None = None
    on: str = "content"

    @classmethod
    def drop(cls, after_bytes: int = 0, times: int | None = 1) -> Fault:
        """Close the connection cleanly (FIN) after `after_bytes` of the body; Content-Length promised more."""
        return cls("drop", times, after_bytes=after_bytes)

    @classmethod
    def reset(cls, after_bytes: int = 0, times: int | None = 1) -> Fault:
        """Abort the connection with a TCP RST (SO_LINGER 0) after `after_bytes` of the body."""
        return cls("reset", times, after_bytes=after_bytes)

    @classmethod
    def stall(cls, after_bytes: int = 0, seconds: float | None = None, times: int | None = 1) -> Fault:
        """Stop sending after `after_bytes` for `seconds` (None: until the hub stops), socket kept open."""
        return cls("stall", times, after_bytes=after_bytes, seconds=seconds)

    @classmethod
    def hang(cls, seconds: float | None = None, times: int | None = 1) -> Fault:
        """Send nothing at all, not even a status line, for `seconds` (None: until the hub stops)."""
        return cls("hang", times, seconds=seconds)

    @classmethod
    def disconnect(cls, reset: bool = False, times: int | None = 1) -> Fault:
        """Close the connection without answering at all: FIN, or RST when `reset`."""
        return cls("disconnect_reset" if reset else "disconnect", times)

    @classmethod
    def status(cls, code: int = 503, times: int | None = 1, retry_after: str | None = None) -> Fault:
        """Answer `code` with a JSON error; 429 gets `Retry-After: 1` unless `retry_after` says otherwise."""
        if code == 429 and retry_after is None:
            retry_after = "1"
        return cls("status", times, code=code, retry_after=retry_after)

    @classmethod
    def wrong_bytes(cls, times: int | None = 1, from_offset: int = 0) -> Fault:
        """Serve the right length but each byte at file offset >= `from_offset` inverted (XOR 0xFF)."""
        return cls("wrong_bytes", times, from_offset=from_offset)

    @classmethod
    def ignore_range(cls, times: int | None = 1) -> Fault:
        """Answer a Range request with 200 and the whole file."""
        return cls("ignore_range", times)

    def matches(self, request: RequestRecord, places: frozenset[str]) -> bool:
        if self.kind in BODY_FAULTS and request.method != "GET":
            return False  # body faults need a body
        if self.on not in places or (self.repo is not None and self.repo != request.repo):
            return False
        if self.path is not None and not request.path.startswith(self.path):
            return False
        return self.file is None or any(fnmatch.fnmatchcase(f, self.file) for f in request.files)


class FaultBook:
    """Faults waiting for requests, taken first-added first; one fault per response."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.release_generation = 0  # bumped by release_stalls; a stall ends when it changes

    def add(
        self,
        fault: Fault,
        *,
        file: str | None = None,
        repo: str | None = None,
        path: str | None = None,
        on: str = "content",
    ) -> Fault:
        """Arm `fault` for requests about `file` (repo path or glob) of `repo`, whose URL path starts with
        `path`, at place `on` (see PLACES); every criterion left None matches anything. Returns the armed
        fault, whose `fired` counts the responses it spoiled."""
        if on not in PLACES:
            raise ValueError(f"on must be one of {PLACES}")
        armed = replace(fault, file=file, repo=repo, path=path, on=on, fired=0)
        with self._lock:
            self._faults.append(armed)
        return armed

    def take(self, request: RequestRecord, places: frozenset[str]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(request, places):
                    fault.fired += 1
                    if fault.times is not None and fault.fired >= fault.times:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def release_stalls(self) -> None:
        """End every stall and hang in progress (their connections are then closed)."""
        with self._lock:
            self.release_generation += 1


@dataclass
class RequestRecord:
    """One request as the fake saw it; `status` and `body_bytes` grow while the response is sent."""

    method: str
    path: str  # without the query
    query: str
    range: str | None
    authorization: bool
    client_port: int
    host: str | None
    place: str = "other"  # "api", "resolve", "cdn" or "other"
    repo: str | None = None
    files: tuple[str, ...] = ()
    status: int | None = None
    body_bytes: int = 0
    fault: str | None = None
    done: bool = False
    started: float = field(default_factory=time.monotonic)


class RequestLog:
    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def finish(self, record: RequestRecord) -> None:
        """Mark `record`'s response as ended (sent, failed or cut) and wake those waiting for it."""
        with self._changed:
            record.done = True
            self._changed.notify_all()

    def wait_done(self, path_prefix: str, timeout_s: float) -> list[RequestRecord]:
        """The records for `path_prefix` once each response has ended, or as they are after `timeout_s`."""
        with self._changed:
            self._changed.wait_for(
                lambda: all(r.done for r in self._records if r.path.startswith(path_prefix)), timeout_s
            )
            return [r for r in self._records if r.path.startswith(path_prefix)]

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
