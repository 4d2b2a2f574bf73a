"""One step's batch of the batching engine (server.engine.loop): what each slot feeds to `llama_decode`."""
from __future__ import annotations

from typing import Any, Sequence

from .chunking import prompt_take
from .prompt_reuse import PrefixReuse
from .slots import Slot, SlotState


def fill_batch(batch: Any, slots: Sequence[Slot], n_batch: int, reuse: PrefixReuse | None, n_swa: int) -> int:
    """Put every generating slot's next token in `batch`, then prompt chunks in the room left, oldest request
    first; mark where each slot's logits come out (`slot.logit_index`). Returns the batch's token count."""
    n = 0
    for slot in slots:
        slot.logit_index = None
        if slot.state is SlotState.GENERATING:
            put(batch, n, slot.next_token, len(slot.tokens), slot.seq, True)
            slot.tokens.append(slot.next_token)
            slot.next_token, slot.logit_index = None, n
            n += 1
    room = n_batch - n
    reading = sorted((s for s in slots if s.state is SlotState.READING_PROMPT), key=lambda s: s.job.submitted)
    for slot in reading:
        if room <= 0:
            break
        take = room if reuse is None else reuse.chunk_room(slot, room)  # stop at a checkpoint
        if n_swa > 0:  # read the prompt's end in llama-server's pieces: its rounding, its answer
            take = prompt_take(len(slot.pending), take, n_batch)
        chunk, slot.pending = slot.pending[:take], slot.pending[take:]
        start = len(slot.tokens)
        for i, token in enumerate(chunk):
            put(batch, n + i, token, start + i, slot.seq, False)
        slot.tokens.extend(chunk)
        n += len(chunk)
        room -= len(chunk)
        if not slot.pending:
            batch.logits[n - 1] = True
            slot.logit_index = n - 1
    batch.n_tokens = n
    return n


def put(batch: Any, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
    batch.token[i] = token
    batch.pos[i] = pos
    batch.n_seq_id[i] = 1
    batch.seq_id[i][0] = seq
    batch.logits[i] = logits
