"""Where the engine cuts a prompt into decode steps beyond N_BATCH's room: as llama-server does for a model
with sliding-window layers, whose last tokens it reads in batches of their own (tools/server, context
checkpoints: 4 + n_ubatch and 4 tokens before the prompt's end).

Rounding depends on how many tokens one llama_decode reads, and a lone greedy answer can turn at a near tie,
so reading a prompt in the same pieces as llama-server gives its answer (Gemma 3 270M on an AVX-512 EPYC: a
6-token prompt read as 2 + 4 answers as llama-server does, read whole it answers as llama-completion does).
"""
from __future__ import annotations


def prompt_take(remaining: int, room: int, n_batch: int) -> int:
    """How many of a prompt's `remaining` tokens to read now, with `room` left in this step: up to the next
    of llama-server's cuts, min(N_BATCH, 4 + N_BATCH) and 4 tokens before the end (N_BATCH is also our
    n_ubatch)."""
    for before_end in (min(n_batch, 4 + n_batch), 4):
        if remaining > before_end:
            return min(room, remaining - before_end)
    return min(room, remaining)
