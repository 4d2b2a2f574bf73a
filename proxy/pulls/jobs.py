"""Pull jobs: one per file being fetched, shared by every request for it, queued for a slot."""
from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from proxy.errors import ErrorCode, ProxyError
from proxy.pulls.events import Complete, Downloading, Failed, PullEvent, Queued, Starting

if TYPE_CHECKING:
    from proxy.pulls.request import PullRequest

log = logging.getLogger(__name__)


class PullJob:
    """A download that runs detached from the requests that follow it, with its event log."""

    def __init__(self, key: str, repo: str, filename: str | None, work: Callable[["PullJob"], None] | None,
                 on_end: Callable[["PullJob"], None] = lambda job: None):
        self.id = uuid.uuid4().hex[:12]
        self.key, self.repo, self.filename = key, repo, filename
        self.created_at = time.time()
        self.stop = threading.Event()
        self._work = work
        self._on_end = on_end
        self._cond = threading.Condition()
        self._log: list[tuple[int, PullEvent]] = []  # progress lines replace the previous progress line
        self._seq = 0

    @classmethod
    def ended(cls, repo: str, filename: str | None, final: PullEvent) -> "PullJob":
        """A job that ended before any work ran (a pull refused, or answered from what is installed)."""
        job = cls(f"ended:{repo}/{filename}", repo, filename, work=None)
        job.publish(job.starting_event())
        job.publish(final)
        return job

    def starting_event(self) -> Starting:
        return Starting(self.repo, self.filename)

    def publish(self, event: PullEvent) -> None:
        with self._cond:
            self._seq += 1
            if isinstance(event, Downloading) and self._log and isinstance(self._log[-1][1], Downloading):
                self._log[-1] = (self._seq, event)
            else:
                self._log.append((self._seq, event))
            self._cond.notify_all()

    @property
    def latest(self) -> PullEvent:
        with self._cond:
            return self._log[-1][1] if self._log else self.starting_event()

    @property
    def done(self) -> bool:
        return self.latest.ends

    def summary(self) -> dict:
        """What GET /v1/api/pulls shows: who, what, and the latest event's fields."""
        # The job's own repo and file name win over an event's (smoke_test names the model id).
        latest = {k: v for k, v in self.latest.to_json().items() if k not in ("model", "filename")}
        return {"id": self.id, "model": self.repo, "filename": self.filename, **latest}

    def follow(self, joined: bool) -> Iterator[PullEvent]:
        """The lines a request streams: all of them for the first caller; for one that joins later,
        `starting`, the latest line, then everything from there on."""
        with self._cond:
            last_seq, last = self._log[-1] if self._log else (0, self.starting_event())
        seq = 0
        if joined:
            seq = last_seq if isinstance(last, Starting) else last_seq - 1
            yield self.starting_event()
        while True:
            with self._cond:
                fresh = [(s, e) for s, e in self._log if s > seq]
                if not fresh:
                    self._cond.wait(5.0)
                    continue
            for seq, event in fresh:
                yield event
                if event.ends:
                    return

    def wait(self, timeout_s: float | None = None) -> PullEvent:
        with self._cond:
            self._cond.wait_for(lambda: self.done, timeout_s)
        return self.latest

    def run(self) -> None:
        """Do the work; the job ends with a final line whatever happens, then `on_end` is told."""
        try:
            self._work(self)
        except ProxyError as err:
            self.publish(Failed.of(err))
        except Exception:  # noqa: BLE001 - a job must always end with a final line
            log.exception("pull %s of %s/%s failed", self.id, self.repo, self.filename)
            self.publish(Failed("internal error; see the proxy's log", ErrorCode.INTERNAL_ERROR))
        if not self.done:
            code = ErrorCode.PULL_STOPPED if self.stop.is_set() else ErrorCode.HUB_UNAVAILABLE
            self.publish(Failed("the pull was interrupted", code))
        self._on_end(self)


@dataclass(frozen=True)
class Ticket:
    """What PullService.start() answers: the `complete` line of a pull already installed, or the job to follow."""

    request: PullRequest | None  # None: the body did not parse (a remembered failure)
    job: PullJob | None = None
    joined: bool = False  # the job was already running for another caller
    cached: Complete | None = None

    def events(self) -> Iterator[PullEvent]:
        yield from [self.cached] if self.cached is not None else self.job.follow(self.joined)

    def wait(self, timeout_s: float | None = None) -> PullEvent:
        return self.cached if self.cached is not None else self.job.wait(timeout_s)


class PullJobs:
    """Running and waiting jobs keyed by installed filename, at most `concurrency` running at once."""

    def __init__(self, concurrency: int, queue_max: int, history_max: int = 200):
        self.concurrency = max(1, concurrency)
        self.queue_max = max(0, queue_max)
        self._lock = threading.Lock()
        self._active: dict[str, PullJob] = {}  # running or waiting, by key
        self._waiting: list[PullJob] = []
        self._running: set[str] = set()
        self._history: dict[str, PullJob] = {}  # jobs this process knows, by id, oldest first
        self._history_max = history_max
        self._stopping = False

    def active(self, key: str) -> PullJob | None:
        with self._lock:
            return self._active.get(key)

    def get(self, job_id: str) -> PullJob | None:
        with self._lock:
            return self._history.get(job_id)

    def jobs(self) -> list[PullJob]:
        with self._lock:
            return sorted(self._history.values(), key=lambda job: job.created_at)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return len(self._running), len(self._waiting)

    def submit(self, key: str, repo: str, make: Callable[[], PullJob]) -> tuple[PullJob, bool]:
        """The job already fetching `key` (joined=True) or a new one, started or queued.

        Raises:
            ProxyError: model_busy (another repo is fetching this name), pull_queue_full.
        """
        with self._lock:
            job = self._active.get(key)
            if job is not None:
                if job.repo.lower() != repo.lower():
                    raise ProxyError(ErrorCode.MODEL_BUSY, f"{key} is being pulled from {job.repo}")
                return job, True
            if len(self._running) >= self.concurrency and len(self._waiting) >= self.queue_max:
                raise ProxyError(ErrorCode.PULL_QUEUE_FULL, "too many pulls are waiting; try again later")
            job = make()
            self._active[key] = job
            self._remember(job)
            if len(self._running) < self.concurrency:
                self._start(job)
            else:
                self._waiting.append(job)
                job.publish(Queued(len(self._waiting)))
            return job, False

    def record_ended(self, repo: str, filename: str | None, final: PullEvent) -> PullJob:
        """Show a pull that ended before a job ran (refused, or already installed) in GET /v1/api/pulls."""
        job = PullJob.ended(repo, filename, final)
        with self._lock:
            self._remember(job)
        return job

    def shutdown(self, wait_s: float = 0.0) -> None:
        """Stop every job: running transfers save their progress (waited for up to `wait_s`), waiting
        ones end, so every stream gets its last line. Both keep their notes: the next start resumes them."""
        with self._lock:
            self._stopping = True
            jobs = list(self._active.values())
            waiting, self._waiting = self._waiting, []
            for job in waiting:
                self._active.pop(job.key, None)
        for job in waiting:
            job.publish(Failed("the proxy stopped before this pull started; its next start resumes it",
                               ErrorCode.PULL_STOPPED))
        for job in jobs:
            job.stop.set()
        deadline = time.monotonic() + wait_s
        for job in jobs:
            job.wait(max(0.0, deadline - time.monotonic()))

    def _remember(self, job: PullJob) -> None:
        self._history[job.id] = job
        finished = [j for j in self._history.values() if j.done]
        for old in finished[: max(0, len(self._history) - self._history_max)]:
            del self._history[old.id]

    def _start(self, job: PullJob) -> None:
        self._running.add(job.key)
        threading.Thread(target=self._run, args=(job,), name=f"pull-{job.id}", daemon=True).start()

    def _run(self, job: PullJob) -> None:
        try:
            job.run()
        finally:
            self._finish(job)

    def _finish(self, job: PullJob) -> None:
        with self._lock:
            self._running.discard(job.key)
            self._active.pop(job.key, None)
            if self._waiting and not self._stopping:
                self._start(self._waiting.pop(0))
            for position, waiting in enumerate(self._waiting, start=1):
                waiting.publish(Queued(position))
