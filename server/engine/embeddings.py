"""Embeddings on the same GGUF (OpenAI's /v1/embeddings): a second llama.cpp context in embedding mode,
made on first use and run on the model's engine thread between generation steps; inputs are packed into
one batch, a sequence each, as llama-cpp-python's `embed` packs them."""
from __future__ import annotations

import ctypes
import math
from typing import Any

from ..errors import InvalidRequest

EMBEDDING_CTX_CAP = 8192  # tokens one input may have at most (and one embedding batch)
EMBEDDING_SEQS = 16  # inputs decoded together


def embed(handle: Any, inputs: list[list[int]]) -> list[list[float]]:
    """L2-normalized embeddings of tokenized `inputs` (runs on the engine's thread).

    Raises:
        InvalidRequest: an input longer than the embedding context.
    """
    import llama_cpp as ll

    n_ctx = min(handle.n_ctx, EMBEDDING_CTX_CAP)
    for i, tokens in enumerate(inputs):
        if len(tokens) > n_ctx:
            raise InvalidRequest(f"input {i} is {len(tokens)} tokens; model embeddings take at most {n_ctx} "
                                 f"(N_CTX)")
    if handle.embedding_ctx is None:
        handle.embedding_ctx = handle._new_context(n_ctx, EMBEDDING_SEQS, n_ctx, embeddings=True)
    ctx = handle.embedding_ctx
    n_embd = ll.llama_model_n_embd(handle.model.model)
    batch = ll.llama_batch_init(n_ctx, 0, EMBEDDING_SEQS)
    vectors: list[list[float]] = []
    try:
        group: list[list[int]] = []
        for tokens in inputs + [None]:  # None: flush the last group
            if tokens is None or sum(map(len, group)) + len(tokens) > n_ctx or len(group) == EMBEDDING_SEQS:
                if group:
                    vectors.extend(_decode_group(ll, ctx, batch, group, n_embd))
                group = []
            if tokens is not None:
                group.append(tokens or [ll.llama_vocab_bos(handle.vocab)])
    finally:
        ll.llama_batch_free(batch)
    return vectors


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
