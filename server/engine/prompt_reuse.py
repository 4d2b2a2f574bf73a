"""Between the engine's slots and the prompt cache (server.engine.prompt_cache): what a slot held is kept when
the slot is given another request, a request restores the longest cached prefix of its prompt when that is
more than its slot holds, and, for models whose cache cannot be cut back (sliding-window or recurrent
layers), checkpoints are taken while a prompt is read.

Sliding-window layers keep only their last n_swa positions (llama_state_seq_get_data writes only those), so
a state is valid only for continuing at its own end. The engine therefore reads such a prompt in chunks that
stop at checkpoints and keeps the state there: the last block boundary before the prompt's end (the same
prompt again, a chat's next turn), the token where the prompt parts from what its slot held, and the last
block boundary of what it shares with the cache or another slot (a shared system prompt: from the second
conversation that shares it on). Runs on the engine's thread only.
"""
from __future__ import annotations

import ctypes
import logging
import time
from typing import Any, Sequence

from .prompt_cache import BLOCK_TOKENS, PromptCache, common_prefix

log = logging.getLogger(__name__)


class PrefixReuse:
    """The prompt cache as one engine (one model, one context) uses it."""

    def __init__(self, ll: Any, ctx: Any, model: Any, cache: PromptCache, key: str, slots: Sequence[Any],
                 n_swa: int):
        self._ll, self._ctx, self._cache, self.key, self._slots = ll, ctx, cache, key, slots
        self.exact = n_swa > 0 or bool(ll.llama_model_is_recurrent(model)) or bool(ll.llama_model_is_hybrid(model))
        self._targets: dict[int, list[int]] = {}  # a slot's checkpoints still to take, by seq

    def prepare(self, slot: Any, prompt: list[int], keep: int) -> int:
        """Before `slot` (keeping `keep` of its tokens) starts `prompt`: keep what it held, restore a longer
        cached prefix. The number of prompt tokens its sequence now holds."""
        parts_here = len(slot.tokens) > keep >= BLOCK_TOKENS  # the slot held more: the two prompts part at keep
        if len(slot.tokens) > keep and len(slot.tokens) >= BLOCK_TOKENS:
            self.save(slot)
        tier = "slot" if keep > 0 else None
        found = self._cache.best(self.key, prompt, len(prompt) - 1)
        if found is not None and found.n > max(keep, BLOCK_TOKENS - 1):  # a block at least: a restore copies it all
            state = self._cache.state_of(self.key, found)
            if state is not None and self._restore(slot.seq, state):
                slot.tokens, keep, tier = list(found.tokens), found.n, found.tier
            elif state is not None:  # llama.cpp cleared the sequence when the state did not fit it
                slot.tokens, keep, tier = [], 0, None
            parts_here = False
        self._cache.count(tier if keep >= BLOCK_TOKENS else None, keep)  # a chat template's first tokens: no hit
        self._targets.pop(slot.seq, None)
        if self.exact:
            self._targets[slot.seq] = self._checkpoints(slot, prompt, keep, parts_here)
        return keep

    def chunk_room(self, slot: Any, room: int) -> int:
        """How many prompt tokens `slot` may evaluate in this step: up to its next checkpoint."""
        targets = self._targets.get(slot.seq)
        if targets and targets[0] == len(slot.tokens):  # where this prompt parts from the slot's last one
            targets.pop(0)
            self.save(slot)
        while targets and targets[0] <= len(slot.tokens):
            targets.pop(0)
        return min(room, targets[0] - len(slot.tokens)) if targets else room

    def after_decode(self) -> None:
        """Take the checkpoints that this step's llama_decode reached."""
        for slot in self._slots:
            targets = self._targets.get(slot.seq)
            if targets and len(slot.tokens) == targets[0]:
                targets.pop(0)
                self.save(slot)

    def save(self, slot: Any) -> None:
        """Keep the state of everything `slot`'s sequence holds (unless the cache has it)."""
        if self._cache.contains(self.key, slot.tokens):
            return
        started = time.perf_counter()
        state = self._capture(slot.seq)
        if state:
            self._cache.put(self.key, slot.tokens, self.exact, state)
            log.debug("prompt cache: kept %d tokens, %d bytes, in %.1f ms", len(slot.tokens), len(state),
                      1000 * (time.perf_counter() - started))

    def save_all(self) -> None:
        """Keep every slot's state, then write the model's entries to disk (the model is being unloaded)."""
        try:  # the unload goes on whatever happens to the cache
            for slot in self._slots:
                if len(slot.tokens) >= BLOCK_TOKENS:
                    self.save(slot)
            written = self._cache.flush(self.key)
        except Exception:
            log.exception("prompt cache: could not keep the prompts of an unloaded model")
            return
        log.info("prompt cache: %d entries of the unloaded model written to disk", written)

    def _checkpoints(self, slot: Any, prompt: list[int], keep: int, parts_here: bool) -> list[int]:
        """Where to keep `prompt`'s state: the last block boundary before its end, the last one of what it shares
        with the cache or another slot, and `keep` itself when the prompt parts there from the slot's last one
        (taken before the first chunk)."""
        shared = max([self._cache.longest_shared(self.key, prompt)]
                     + [common_prefix(other.tokens, prompt) for other in self._slots if other is not slot])
        points = {min(shared, len(prompt) - 1) // BLOCK_TOKENS * BLOCK_TOKENS,
                  (len(prompt) - 1) // BLOCK_TOKENS * BLOCK_TOKENS} | ({keep} if parts_here else set())
        return sorted(t for t in points if (t > keep or (t == keep and parts_here)) and t >= BLOCK_TOKENS
                      and not self._cache.contains(self.key, prompt[:t]))

    def _capture(self, seq: int) -> bytes | None:
        ll = self._ll
        size = ll.llama_state_seq_get_size(self._ctx, seq)
        buffer = (ctypes.c_uint8 * size)()
        n = ll.llama_state_seq_get_data(self._ctx, buffer, size, seq)
        if n == 0:
            log.warning("prompt cache: llama.cpp gave no state for a sequence of %d bytes", size)
            return None
        return ctypes.string_at(buffer, n)

    def _restore(self, seq: int, state: bytes) -> bool:
        started = time.perf_counter()
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if self._ll.llama_state_seq_set_data(self._ctx, buffer, len(state), seq) == 0:
            log.warning("prompt cache: llama.cpp refused a state of %d bytes; the prompt is evaluated", len(state))
            return False
        log.debug("prompt cache: restored %d bytes in %.1f ms", len(state), 1000 * (time.perf_counter() - started))
        return True
