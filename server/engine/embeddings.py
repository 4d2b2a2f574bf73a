"""Embeddings on the same GGUF (OpenAI's /v1/embeddings): a second llama.cpp context in embedding mode, made on
first use. A request's inputs are decoded in bounded groups (EMBEDDING_SEQS inputs, EMBEDDING_GROUP_TOKENS
tokens), one group a task on the model's engine thread, so generation steps run between groups: streams on the
model wait for one group at most, never for the whole request; a client that leaves stops it at the next group.
"""
from __future__ import annotations

import ctypes
import math
from typing import Any, Iterator

from ..errors import InvalidRequest
from .client import Waiter

EMBEDDING_CTX_CAP = 8192  # tokens one input may have at most
EMBEDDING_SEQS = 16  # inputs decoded together
# Tokens of one group (an input longer than this is a group of its own). Every token of an embedding goes
# through the output layer (llama.cpp marks them all as outputs for pooling), which on a 262k vocabulary costs
# several times a prompt token: 128 keeps a group's decode near one prompt chunk's.
EMBEDDING_GROUP_TOKENS = 128
MAX_EMBEDDING_INPUTS = 2048  # inputs of one request, as OpenAI bounds them (docs/api.md, Limits)
MAX_EMBEDDING_TOKENS = 65536  # tokens of all of one request's inputs together


def check_inputs(inputs: list[str]) -> None:
    """Refuse more inputs than one request may embed, before any is tokenized.

    Raises:
        InvalidRequest: more than MAX_EMBEDDING_INPUTS.
    """
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequest(f"`input` has {len(inputs)} strings; at most {MAX_EMBEDDING_INPUTS} a request: send "
                             "the rest in further requests", param="input")


def embed(engine: Any, handle: Any, inputs: list[list[int]], waiter: Waiter) -> list[list[float]]:
    """L2-normalized embeddings of tokenized `inputs`, group by group on `engine`'s thread.

    Raises:
        InvalidRequest: an input longer than the embedding context, or more tokens than MAX_EMBEDDING_TOKENS.
        Abandoned: the client left (or its time ran out) before the last group.
    """
    n_ctx = min(handle.n_ctx, EMBEDDING_CTX_CAP)
    total = sum(map(len, inputs))
    if total > MAX_EMBEDDING_TOKENS:
        raise InvalidRequest(f"the inputs are {total} tokens together; at most {MAX_EMBEDDING_TOKENS} a request",
                             param="input")
    for i, tokens in enumerate(inputs):
        if len(tokens) > n_ctx:
            raise InvalidRequest(f"input {i} is {len(tokens)} tokens; model embeddings take at most {n_ctx} "
                                 f"(N_CTX)", param="input")
    vectors: list[list[float]] = []
    for group in _groups([tokens or [_bos(handle)] for tokens in inputs]):
        waiter.check()
        vectors.extend(engine.call(_embed_group, handle, group, n_ctx))
    return vectors


def _groups(inputs: list[list[int]]) -> Iterator[list[list[int]]]:
    """Consecutive inputs in groups of at most EMBEDDING_SEQS inputs and EMBEDDING_GROUP_TOKENS tokens."""
    group: list[list[int]] = []
    for tokens in inputs:
        if group and (len(group) == EMBEDDING_SEQS or sum(map(len, group)) + len(tokens) > EMBEDDING_GROUP_TOKENS):
            yield group
            group = []
        group.append(tokens)
    if group:
        yield group


def _bos(handle: Any) -> int:
    import llama_cpp as ll

    return ll.llama_vocab_bos(handle.vocab)


def _embed_group(handle: Any, group: list[list[int]], n_ctx: int) -> list[list[float]]:
    """One group's vectors (runs on the engine's thread, between generation steps)."""
    import llama_cpp as ll

    if handle.embedding_ctx is None:
        handle.embedding_ctx = handle._new_context(n_ctx, EMBEDDING_SEQS, n_ctx, embeddings=True)
    n_tokens = sum(map(len, group))
    batch = ll.llama_batch_init(n_tokens, 0, 1)
    try:
        return _decode_group(ll, handle.embedding_ctx, batch, group, ll.llama_model_n_embd(handle.model.model))
    finally:
        ll.llama_batch_free(batch)


def _decode_group(ll: Any, ctx: Any, batch: Any, group: list[list[int]], n_embd: int) -> list[list[float]]:
    ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
    n = 0
    for seq, tokens in enumerate(group):
        for pos, token in enumerate(tokens):
            batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
            batch.seq_id[n][0] = seq
            batch.logits[n] = True
            n += 1
    batch.n_tokens = n
    if ll.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed for an embedding batch")
    out = []
    for seq in range(len(group)):
        pointer = ll.llama_get_embeddings_seq(ctx, seq)
        values = list(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float))[:n_embd])
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        out.append([v / norm for v in values])
    return out
