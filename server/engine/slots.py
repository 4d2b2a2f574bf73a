"""A slot of the batching engine (server.engine.loop) and its state, as llama.cpp's server names them."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .jobs import Job
from .sampling import TokenSampler
from .textout import TextOut


class SlotState(enum.Enum):
    """Where a slot's request is (llama-server's slot_state): no request, reading its prompt, or generating."""

    IDLE = "idle"
    READING_PROMPT = "reading the prompt"  # `pending` holds the prompt tokens not yet evaluated
    GENERATING = "generating"  # `next_token` is sampled, to be fed at the next step


@dataclass(eq=False)
class Slot:
    """One sequence of the context: the tokens its KV cache holds and the request running in it, if any.

    Its state changes under the engine's lock (admitted, released) or on the engine's thread (the prompt read),
    so the request threads' side sees IDLE exactly when no request holds it.
    """

    seq: int
    tokens: list[int] = field(default_factory=list)  # what the KV cache holds for `seq`
    state: SlotState = SlotState.IDLE
    job: Job | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens not yet evaluated
    next_token: int | None = None  # sampled, to be fed at the next step
    chain: TokenSampler | None = None
    out: TextOut | None = None
    logit_index: int | None = None
    cached: int = 0
    last_used: float = 0.0
    started_at: float = 0.0  # when the current request took the slot (llama-server's prompt seconds)

    @property
    def busy(self) -> bool:
        return self.state is not SlotState.IDLE


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many tokens `a` and `b` share from the start."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
