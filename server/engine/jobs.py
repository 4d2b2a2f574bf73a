"""What a request hands the batching engine (server.engine.loop) and what comes back: a `Job` and its events."""
from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from typing import Any

from .sampling import Sampling
from .waiting import Waiter


@dataclass(frozen=True)
class Finished:
    """The last event of a job: why it ended and what it counted."""

    reason: str  # "stop" (end of sequence or a stop string) or "length" (max_tokens or the context)
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
    cancelled: bool = False  # set by the request's thread when nobody reads the events any more
    first_token_at: float | None = None
    n_generated: int = 0

    def cancel(self) -> None:
        """Stop generating for this job; its slot is freed at the next step."""
        self.cancelled = True


@dataclass(frozen=True)
class SlotReport:
    """One slot as llama-server's /slots shows it: whether a request runs in it and how far it got."""

    id: int
    processing: bool
    n_cached: int  # tokens its KV cache holds
    n_decoded: int = 0  # tokens generated for the running request
    n_remain: int = -1  # tokens it may still generate (-1: no limit)
