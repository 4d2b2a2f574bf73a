"""What a request hands the batching engine (server.engine.loop) and what comes back: a `Job` and its events.

The request's thread reads the events and watches its client (`JobEvents`); when the client leaves, its deadline
passes or the reader stops early, it cancels the job, as llama-server's HTTP side posts a cancel task: the loop
reads the flag and never touches a socket.
"""
from __future__ import annotations

import enum
import queue
import time
from dataclasses import dataclass, field
from typing import Any

from .sampling import Sampling
from .client import Waiter

WATCH_S = 0.1  # how often a request reading its job's events looks whether its client still waits


class FinishReason(enum.StrEnum):
    """Why an answer ended, as clients read it in `finish_reason` (the values are OpenAI's strings)."""

    STOP = "stop"  # the end of sequence, or a stop string
    LENGTH = "length"  # max_tokens, or the context is full
    TOOL_CALLS = "tool_calls"  # stopped after calling tools (the API reads that in the answer: agent_shapes)


@dataclass(frozen=True)
class Finished:
    """The last event of a job: why it ended and what it counted."""

    reason: FinishReason  # the engine's: STOP or LENGTH
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens found in the slot's cache, not evaluated again
    stop_word: str = ""  # the stop string that ended it, if one did (llama-server's stopping_word)


@dataclass(eq=False)
class Job:
    """One request's generation. `events` yields text pieces (str), then a `Finished` or a BackendError."""

    prompt: list[int]
    sampling: Sampling
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    special: bool = False  # control tokens come out as text (a tool call's <|python_tag|>, [TOOL_CALLS])
    reader: Any = None  # how the API reads the answer back (server.chat.answer.AnswerReader); not the engine's
    waiter: Waiter = field(default_factory=Waiter)
    events: "queue.SimpleQueue[object]" = field(default_factory=queue.SimpleQueue)
    submitted: float = field(default_factory=time.monotonic)
    cancelled: bool = False  # set by the request's thread (JobEvents) when nobody reads the events any more
    first_token_at: float | None = None
    n_generated: int = 0

    def cancel(self) -> None:
        """Stop generating for this job: it leaves the queue, or frees its slot, at the next step."""
        self.cancelled = True


class JobEvents:
    """`job`'s events until `Finished`, read on the request's thread, which checks its client every WATCH_S: the
    one place a job is cancelled (when the client left or its deadline passed, the job failed, or the reader is
    closed before the end)."""

    def __init__(self, job: Job):
        self.job = job
        self._checked = time.monotonic()
        self._done = False

    def __iter__(self) -> "JobEvents":
        return self

    def __next__(self) -> object:
        """The next text piece, or the `Finished` that ends them.

        Raises:
            BackendError: the job failed; Abandoned when nobody waits for it any more.
        """
        if self._done:
            raise StopIteration
        try:
            event = self._wait()
            if isinstance(event, BaseException):
                raise event
        except BaseException:
            self.close()
            raise
        if isinstance(event, Finished):
            self._done = True
        return event

    def _wait(self) -> object:
        job = self.job
        while True:
            try:
                event = job.events.get(timeout=WATCH_S)
            except queue.Empty:
                event = None
            now = time.monotonic()
            if now - self._checked >= WATCH_S:
                job.waiter.check()
                self._checked = now
            if event is not None:
                return event

    def close(self) -> None:
        """Stop reading: the engine drops the job at its next step (nothing, once it finished)."""
        self._done = True
        self.job.cancel()


@dataclass(frozen=True)
class SlotReport:
    """One slot as llama-server's /slots shows it: whether a request runs in it and how far it got."""

    id: int
    processing: bool
    n_cached: int  # tokens its KV cache holds
    n_decoded: int = 0  # tokens generated for the running request
    n_remain: int = -1  # tokens it may still generate (-1: no limit)
