"""Sampler chains: penalties restricted to the candidates that can still win pick what the whole vocabulary
would (docs/api.md, Generating). llama.cpp's samplers on synthetic logits: no model needed."""
from __future__ import annotations

import ctypes

import llama_cpp as ll
import numpy as np
import pytest

from server.engine.sampling import Sampling, make_chain

N_VOCAB = 262_144  # Gemma 3's


def _reference_chain(sampling: Sampling) -> ctypes.c_void_p:
    """llama-server's order over the whole vocabulary: penalties first, then greedy or top-k ... dist."""
    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_penalties(
        N_VOCAB, sampling.repeat_last_n, sampling.repeat_penalty, sampling.frequency_penalty,
        sampling.presence_penalty))
    if sampling.temperature == 0:
        ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
        return chain
    for sampler in (ll.llama_sampler_init_top_k(sampling.top_k), ll.llama_sampler_init_typical(sampling.typical_p, 1),
                    ll.llama_sampler_init_top_p(sampling.top_p, 1), ll.llama_sampler_init_min_p(sampling.min_p, 1),
                    ll.llama_sampler_init_temp(sampling.temperature), ll.llama_sampler_init_dist(sampling.seed)):
        ll.llama_sampler_chain_add(chain, sampler)
    return chain


def _pick(chain, logits: np.ndarray) -> int:
    data = (ll.llama_token_data * len(logits))()
    view = np.frombuffer(data, dtype=np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)]))
    view["id"], view["logit"] = np.arange(len(logits), dtype=np.int32), logits
    array = ll.llama_token_data_array(data=data, size=len(logits), selected=-1, sorted=False)
    ll.llama_sampler_apply(chain, ctypes.byref(array))
    return int(view["id"][array.selected])


@pytest.mark.parametrize("sampling", [
    Sampling(temperature=0, repeat_penalty=1.5),
    Sampling(temperature=0, frequency_penalty=1.0, presence_penalty=0.5, repeat_last_n=16),
    Sampling(temperature=1.0, top_k=40, top_p=1.0, min_p=0.0, repeat_penalty=1.3, seed=7),
])
def test_penalties_on_the_best_candidates_pick_what_the_whole_vocabulary_picks(sampling):
    rng = np.random.default_rng(1)
    ours, reference = make_chain(sampling, N_VOCAB, 4096), _reference_chain(sampling)
    try:
        differed_from_unpenalized = 0
        for _ in range(15):
            logits = rng.normal(0, 3, N_VOCAB).astype(np.float32)
            best = np.argsort(-logits)[:80]  # a history of the likeliest tokens: the penalties move the winner
            for token in rng.choice(best, 60):
                ll.llama_sampler_accept(ours, int(token))
                ll.llama_sampler_accept(reference, int(token))
            picked = _pick(ours, logits)
            assert picked == _pick(reference, logits)
            differed_from_unpenalized += picked != int(best[0])
        assert differed_from_unpenalized > 0  # the penalties did change winners: the comparison means something
    finally:
        ll.llama_sampler_free(ours)
        ll.llama_sampler_free(reference)


def test_penalties_that_raise_logits_are_applied_to_the_whole_vocabulary():
    """A repeat_penalty below 1 can lift any repeated token to the top: no restriction then."""
    chain = make_chain(Sampling(temperature=0, repeat_penalty=0.5), N_VOCAB, 4096)
    try:
        logits = np.full(N_VOCAB, -1.0, dtype=np.float32)
        logits[:100] = 10.0  # a hundred better tokens: far more than a restriction to 1 + 64 would keep
        logits[200_000] = 6.0
        ll.llama_sampler_accept(chain, 200_000)  # 6.0 / 0.5 = 12.0: now the best
        assert _pick(chain, logits) == 200_000
    finally:
        ll.llama_sampler_free(chain)
