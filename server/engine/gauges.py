"""One engine's load and KV use, and its serving counters, for GET /stats (the proxy's /metrics shows them as the
inference gateway's gauges and llama-server's counters: docs/deployment.md, "Many pods behind the inference
gateway").

Read without the engine's lock or its thread: a scrape every 50 ms must never wait behind a decode step.
The counts are read from the engine's slots as they stand (each read is atomic under the GIL), so a figure may
be one step old, never blocked.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from .prompt_cache import BLOCK_TOKENS


@dataclass(frozen=True)
class EngineLoad:
    """What one engine is doing now."""

    running: int  # requests holding a slot (reading their prompt or generating)
    waiting: int  # requests queued for a slot
    kv_cells_used: int  # KV cells holding running requests' tokens
    kv_cells: int  # the cells of the model's KV cache (PARALLEL slots of N_CTX)

    @property
    def kv_usage(self) -> float:
        """Cells in use over the cache's cells, 0-1."""
        return min(1.0, self.kv_cells_used / self.kv_cells) if self.kv_cells > 0 else 0.0


class EngineCounters:
    """llama-server's serving counters for one engine: tokens and seconds of prompt reading and generation,
    decode steps and the slots busy in them. Written by the engine's thread, read by GET /stats."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held for a few additions: never across a decode
        self.prompt_tokens = 0
        self.prompt_seconds = 0.0
        self.generated_tokens = 0
        self.generated_seconds = 0.0
        self.decodes = 0
        self.busy_slots_in_decodes = 0

    def decoded(self, busy_slots: int) -> None:
        """One llama_decode ran with `busy_slots` slots holding requests."""
        with self._lock:
            self.decodes += 1
            self.busy_slots_in_decodes += busy_slots

    def finished(self, prompt_evaluated: int, generated: int, started: float, first_token_at: float | None,
                 ended: float) -> None:
        """A request left its slot: its prompt read from `started` to its first token, then it generated."""
        with self._lock:
            self.prompt_tokens += prompt_evaluated
            self.generated_tokens += generated
            if first_token_at is not None:
                self.prompt_seconds += max(0.0, first_token_at - started)
                self.generated_seconds += max(0.0, ended - first_token_at)

    def to_dict(self) -> dict:
        with self._lock:
            per_decode = self.busy_slots_in_decodes / self.decodes if self.decodes else 0.0
            return {"prompt_tokens": self.prompt_tokens, "prompt_seconds": self.prompt_seconds,
                    "generated_tokens": self.generated_tokens, "generated_seconds": self.generated_seconds,
                    "decodes": self.decodes, "busy_slots_per_decode": per_decode}


def model_stats(model_id: str, load: EngineLoad, counters: EngineCounters) -> dict:
    """One loaded model's entry of GET /stats's `models`."""
    return {"id": model_id, "running": load.running, "waiting": load.waiting,
            "kv_cells_used": load.kv_cells_used, "kv_cells": load.kv_cells, "kv_usage": load.kv_usage,
            # The prompt cache's block: the granularity prefixes are kept in beyond a slot, and what a
            # prefix-aware gateway hashes prompts by (a slot itself reuses any prefix, token by token).
            "block_size": BLOCK_TOKENS, "blocks": load.kv_cells // BLOCK_TOKENS,
            **counters.to_dict()}
