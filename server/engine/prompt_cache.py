"""The prompt cache (docs/api.md, Prompt cache): KV states of prompt prefixes kept beside the slots, in host
memory within PROMPT_CACHE_BYTES (least recently used out, to the disk tier) and on MODELS_DIR within
PROMPT_CACHE_DISK_BYTES (server.engine.prompt_cache_disk).

An entry is a model key (the model file and the settings that shape its KV cache: server.residency.cache_key),
a token prefix and llama.cpp's state of one sequence holding exactly that prefix. An entry of a model whose
cache can be cut back (plain attention) serves any prefix of its tokens; one of a model with sliding-window
or recurrent layers (`exact`) only its whole length, since those layers keep only their last positions.
Shared by every engine of the backend; the engines call it on their own threads.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

from .prompt_cache_disk import DiskEntry, DiskTier

log = logging.getLogger(__name__)

# Tokens a cache block holds: sliding-window models keep checkpoints at multiples of it, and a prefix shorter
# than one block is not cached. /metrics exports it as vllm:cache_config_info's block_size (server.engine.gauges):
# what a prefix-aware gateway hashes prompts by.
BLOCK_TOKENS = 64
TIERS = ("slot", "memory", "disk")


@dataclass(eq=False)
class Entry:
    key: str
    tokens: tuple[int, ...]
    exact: bool
    state: bytes
    on_disk: bool = False


@dataclass(frozen=True)
class Found:
    """A cached prefix usable for a prompt: `n` of its tokens, from `tier`."""

    tier: str
    n: int
    tokens: tuple[int, ...]
    memory: Entry | None = None
    disk: DiskEntry | None = None


class PromptCache:
    """Both tiers, their budgets and their counters."""

    def __init__(self, max_bytes: int, disk: DiskTier | None = None):
        self.max_bytes = max_bytes
        self._room = max_bytes  # what loaded models leave of MAX_MODEL_MEMORY (server.residency.models)
        self.disk = disk
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()  # least recently used first
        self._held = 0
        self._lock = threading.Lock()
        self.hits = dict.fromkeys(TIERS, 0)
        self.misses = 0
        self.cached_tokens = dict.fromkeys(TIERS, 0)

    @property
    def limit_bytes(self) -> int:
        return max(0, min(self.max_bytes, self._room))

    def set_room(self, room_bytes: int) -> None:
        """Memory that loaded models leave: the memory tier shrinks to it (entries go to disk)."""
        with self._lock:
            self._room = room_bytes
            evicted = self._evict_over(self.limit_bytes)
        self._to_disk(evicted)

    def put(self, key: str, tokens: Sequence[int], exact: bool, state: bytes, on_disk: bool = False) -> None:
        """Keep the state of `tokens`; a larger one than the whole budget goes straight to disk (unless it came
        from there)."""
        entry = Entry(key, tuple(tokens), exact, state, on_disk)
        with self._lock:
            old = self._entries.pop(_id(key, entry.tokens), None)
            if old is not None:
                self._held -= len(old.state)
            self._entries[_id(key, entry.tokens)] = entry
            self._held += len(state)
            evicted = self._evict_over(self.limit_bytes)
        self._to_disk(evicted)

    def contains(self, key: str, tokens: Sequence[int]) -> bool:
        with self._lock:
            if _id(key, tuple(tokens)) in self._entries:
                return True
        return self.disk is not None and any(e.tokens == tuple(tokens) for e in self.disk.entries(key))

    def best(self, key: str, prompt: Sequence[int], limit: int) -> Found | None:
        """The cached prefix of `prompt` with the most tokens (at most `limit`), memory before disk."""
        best: Found | None = None
        with self._lock:
            candidates = [e for e in self._entries.values() if e.key == key]
        for entry in candidates:
            n = _usable(entry.tokens, entry.exact, prompt, limit)
            if n and (best is None or n > best.n):
                best = Found("memory", n, entry.tokens, memory=entry)
        for disk_entry in self.disk.entries(key) if self.disk is not None else ():
            n = _usable(disk_entry.tokens, disk_entry.exact, prompt, limit)
            if n and (best is None or n > best.n):
                best = Found("disk", n, disk_entry.tokens, disk=disk_entry)
        return best

    def longest_shared(self, key: str, prompt: Sequence[int]) -> int:
        """How many first tokens `prompt` shares with any entry of `key` (where conversations part)."""
        with self._lock:
            known = [e.tokens for e in self._entries.values() if e.key == key]
        if self.disk is not None:
            known += [e.tokens for e in self.disk.entries(key)]
        return max((common_prefix(tokens, prompt) for tokens in known), default=0)

    def state_of(self, key: str, found: Found) -> bytes | None:
        """The state of `found`; one read from disk moves into memory. None: the file was bad or is gone."""
        if found.memory is not None:
            with self._lock:
                if _id(key, found.tokens) in self._entries:
                    self._entries.move_to_end(_id(key, found.tokens))
            return found.memory.state
        assert found.disk is not None and self.disk is not None
        state = self.disk.read(key, found.disk)
        if state is not None:
            self.put(key, found.tokens, found.disk.exact, state, on_disk=True)
        return state

    def count(self, tier: str | None, cached: int) -> None:
        """One prompt served: its cached tokens came from `tier` (None: nothing was cached)."""
        with self._lock:
            if tier is None:
                self.misses += 1
            else:
                self.hits[tier] += 1
                self.cached_tokens[tier] += cached

    def flush(self, key: str | None = None) -> int:
        """Write the memory entries (of `key`, or all) that are not on disk yet, and wait for the writer: an
        unload, and SIGTERM. The number written."""
        if self.disk is None:
            return 0
        with self._lock:
            pending = [e for e in self._entries.values() if not e.on_disk and (key is None or e.key == key)]
            for entry in pending:
                entry.on_disk = True
        for entry in pending:
            self.disk.write(entry.key, entry.tokens, entry.exact, entry.state)
        self.disk.drain()
        return len(pending)

    def to_dict(self) -> dict:
        """The counters for GET /stats."""
        with self._lock:
            held, entries = self._held, len(self._entries)
            hits, misses, cached = dict(self.hits), self.misses, dict(self.cached_tokens)
        return {"block_tokens": BLOCK_TOKENS, "hits": hits, "misses": misses, "cached_tokens": cached,
                "memory": {"bytes": held, "entries": entries, "limit_bytes": self.limit_bytes},
                "disk": {"bytes": self.disk.bytes_held() if self.disk else 0,
                         "limit_bytes": self.disk.max_bytes if self.disk else 0}}

    def _evict_over(self, limit: int) -> list[Entry]:
        evicted = []
        while self._entries and self._held > limit:
            _, entry = self._entries.popitem(last=False)
            self._held -= len(entry.state)
            evicted.append(entry)
        return evicted

    def _to_disk(self, evicted: list[Entry]) -> None:
        for entry in evicted:
            if self.disk is not None and not entry.on_disk:
                self.disk.write_later(entry.key, entry.tokens, entry.exact, entry.state)


def _id(key: str, tokens: tuple[int, ...]) -> tuple[str, str]:
    return key, hashlib.sha1(repr(tokens).encode()).hexdigest()


def _usable(tokens: tuple[int, ...], exact: bool, prompt: Sequence[int], limit: int) -> int:
    """How many tokens of an entry a prompt can start from (0: none)."""
    if exact:
        n = len(tokens)
        return n if n <= limit and tuple(prompt[:n]) == tokens else 0
    return min(common_prefix(tokens, prompt), limit)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common start of `a` and `b`, compared a block at a time (slices compare in C)."""
    n = min(len(a), len(b))
    i = 0
    while i + BLOCK_TOKENS <= n and tuple(a[i:i + BLOCK_TOKENS]) == tuple(b[i:i + BLOCK_TOKENS]):
        i += BLOCK_TOKENS
    while i < n and a[i] == b[i]:
        i += 1
    return i


def make_prompt_cache(models_dir: str, memory_bytes: int, disk_bytes: int) -> PromptCache | None:
    """The backend's prompt cache under PROMPT_CACHE_BYTES and PROMPT_CACHE_DISK_BYTES; None when both are 0."""
    if memory_bytes <= 0 and disk_bytes <= 0:
        return None
    return PromptCache(max(0, memory_bytes), DiskTier(models_dir, disk_bytes) if disk_bytes > 0 else None)
