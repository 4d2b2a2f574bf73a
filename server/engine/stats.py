"""Serving counters and latency histograms since the backend started, for GET /stats (the proxy's /metrics
reads them: time to first token, time per output token, prompt and generated tokens)."""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

TTFT_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TPOT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def to_dict(self) -> dict:
        cumulative, buckets = 0, []
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            cumulative += n
            buckets.append(["+Inf" if bound == float("inf") else bound, cumulative])
        return {"buckets": buckets, "sum": self.total, "count": self.count}


class ServingStats:
    """Shared by every engine of the backend; `record` is called once a request ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ttft = _Histogram(TTFT_BUCKETS_S)
        self._tpot = _Histogram(TPOT_BUCKETS_S)
        self.prompt_tokens = 0
        self.generated_tokens = 0
        self.tool_calls = 0  # calls returned to clients (OpenAI's tool_calls)
        self.reasoning_tokens = 0  # tokens of reasoning returned apart from the answer (reasoning_content)

    def record(self, submitted: float, first_token_at: float | None, ended: float, prompt_evaluated: int,
               generated: int) -> None:
        with self._lock:
            self.prompt_tokens += prompt_evaluated
            self.generated_tokens += generated
            if first_token_at is not None:
                self._ttft.observe(first_token_at - submitted)
                if generated > 1:
                    self._tpot.observe((ended - first_token_at) / (generated - 1))

    def count_agent_output(self, tool_calls: int, reasoning_tokens: int) -> None:
        """An answer returned `tool_calls` calls and `reasoning_tokens` tokens of reasoning."""
        with self._lock:
            self.tool_calls += tool_calls
            self.reasoning_tokens += reasoning_tokens

    def to_dict(self) -> dict:
        with self._lock:
            return {"prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
                    "tool_calls": self.tool_calls, "reasoning_tokens": self.reasoning_tokens,
                    "ttft_seconds": self._ttft.to_dict(), "tpot_seconds": self._tpot.to_dict()}
