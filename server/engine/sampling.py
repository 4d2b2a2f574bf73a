"""Per-request samplers (llama.cpp's samplers, grammar included) built from the request's settings.

A chain samples as llama-server's does: penalties (only when asked), then greedy for temperature 0, else top-k,
typical, top-p, min-p, temperature and a seeded draw. A grammar (structured output, tool calls) is checked on
the token the chain picks first and constrains the whole vocabulary only when it rejects it (llama.cpp's
common_sampler_sample): a JSON grammar over Gemma 3's 262k tokens costs more than the decode step.
"""
from __future__ import annotations

import ctypes
import json
import random
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import InvalidRequest
from .grammar_limits import check_grammar, check_schema

PENALTY_LAST_N = 64  # llama.cpp's and Ollama's repeat_last_n


@dataclass(frozen=True)
class Sampling:
    """How one request picks its tokens."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = PENALTY_LAST_N  # -1: the whole context
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    grammar: str | None = None  # GBNF, from response_format or a request's tools
    # A lazy grammar (tool calls under tool_choice "auto"): free text until the text so far matches one of these
    # regexes (the grammar then reads from its first group) or one of these tokens comes (server.chat.agent).
    grammar_triggers: tuple[str, ...] = ()
    grammar_trigger_tokens: tuple[int, ...] = ()

    @classmethod
    def of(cls, values: Mapping[str, Any], grammar: str | None = None) -> "Sampling":
        """The sampling of a parsed request (`GenerationRequest.sampling`'s keys)."""
        known = {name: values[name] for name in cls.__dataclass_fields__
                 if not name.startswith("grammar") and values.get(name) is not None}
        return cls(**known, grammar=grammar)

    @property
    def penalized(self) -> bool:
        return (self.repeat_penalty, self.frequency_penalty, self.presence_penalty) != (1.0, 0.0, 0.0) \
            and self.repeat_last_n != 0


class TokenSampler:
    """One request's sampler: `sample` picks the token at a logits row and accepts it; `free` when done."""

    def __init__(self, chain: Any, grammar: Any = None, n_vocab: int = 0):
        """`chain` and `grammar` are llama.cpp samplers this object owns from now on."""
        import llama_cpp as ll

        self._ll, self._chain, self._grammar = ll, chain, grammar
        self._candidates: Any = None
        if grammar is not None:
            import numpy as np

            self._candidates = np.zeros(n_vocab, dtype=np.dtype(
                [("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True))
            self._ids = np.arange(n_vocab, dtype=np.int32)

    def sample(self, ctx: Any, index: int) -> int:
        """The token for logits row `index` of `ctx`'s last decode, accepted by the chain (and grammar)."""
        ll = self._ll
        if self._grammar is None:
            return ll.llama_sampler_sample(self._chain, ctx, index)
        token = self._pick(ctx, index, constrained=False)
        if not self._allowed(token):
            token = self._pick(ctx, index, constrained=True)
        ll.llama_sampler_accept(self._grammar, token)
        ll.llama_sampler_accept(self._chain, token)
        return token

    def free(self) -> None:
        for sampler in (self._chain, self._grammar):
            if sampler is not None:
                self._ll.llama_sampler_free(sampler)
        self._chain = self._grammar = None

    def _pick(self, ctx: Any, index: int, constrained: bool) -> int:
        """Apply the chain (after the grammar when `constrained`) to the whole vocabulary; the chosen token."""
        import numpy as np

        ll, candidates = self._ll, self._candidates
        logits = np.ctypeslib.as_array(ll.llama_get_logits_ith(ctx, index), shape=(len(candidates),))
        candidates["id"], candidates["logit"], candidates["p"] = self._ids, logits, 0.0
        array = ll.llama_token_data_array(
            data=candidates.ctypes.data_as(ctypes.POINTER(ll.llama_token_data)), size=len(candidates),
            selected=-1, sorted=False)
        if constrained:
            ll.llama_sampler_apply(self._grammar, ctypes.byref(array))
        ll.llama_sampler_apply(self._chain, ctypes.byref(array))
        return int(candidates["id"][array.selected])

    def _allowed(self, token: int) -> bool:
        """Whether the grammar accepts `token` next (a one-candidate array: cheap)."""
        ll = self._ll
        one = ll.llama_token_data(id=token, logit=1.0, p=0.0)
        array = ll.llama_token_data_array(data=ctypes.pointer(one), size=1, selected=-1, sorted=False)
        ll.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return one.logit != float("-inf")


def make_sampler(sampling: Sampling, vocab: Any, n_ctx: int, grammar: Any = None) -> TokenSampler:
    """A new sampler for one request; `grammar` a llama.cpp grammar sampler made elsewhere (a tool call's),
    else the one `sampling.grammar` compiles to, if any.

    Raises:
        InvalidRequest: the grammar does not compile.
    """
    import llama_cpp as ll

    if grammar is None and sampling.grammar is not None:
        check_grammar(sampling.grammar, "response_format")  # llama.cpp's parser recurses: never past its bounds
        grammar = _init_grammar(ll, vocab, sampling)
        if not grammar:
            raise InvalidRequest("response_format: the schema gives a grammar llama.cpp cannot compile",
                                 param="response_format")
    n_vocab = ll.llama_vocab_n_tokens(vocab)
    return TokenSampler(make_chain(sampling, n_vocab, n_ctx), grammar, n_vocab)


def _init_grammar(ll: Any, vocab: Any, sampling: Sampling) -> Any:
    """llama.cpp's grammar sampler for `sampling.grammar`, lazy when it has triggers (NULL if it does not compile)."""
    grammar = sampling.grammar.encode()
    if not (sampling.grammar_triggers or sampling.grammar_trigger_tokens):
        return ll.llama_sampler_init_grammar(vocab, grammar, b"root")
    patterns = (ctypes.c_char_p * len(sampling.grammar_triggers))(*(p.encode() for p in sampling.grammar_triggers))
    tokens = (ll.llama_token * len(sampling.grammar_trigger_tokens))(*sampling.grammar_trigger_tokens)
    return ll.llama_sampler_init_grammar_lazy_patterns(vocab, grammar, b"root", patterns, len(patterns), tokens,
                                                      len(tokens))


def make_chain(sampling: Sampling, n_vocab: int, n_ctx: int) -> Any:
    """A new llama.cpp sampler chain without a grammar (the caller frees it with llama_sampler_free)."""
    import llama_cpp as ll

    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    add = lambda sampler: ll.llama_sampler_chain_add(chain, sampler)  # noqa: E731
    greedy = sampling.temperature == 0
    if sampling.penalized:
        last_n = n_ctx if sampling.repeat_last_n < 0 else sampling.repeat_last_n
        keep = _candidates_penalties_need(sampling, last_n, 1 if greedy else sampling.top_k)
        if keep:  # the penalty scans what is left: keep-1 tokens instead of the whole vocabulary
            add(ll.llama_sampler_init_top_k(keep))
        add(ll.llama_sampler_init_penalties(n_vocab, last_n, sampling.repeat_penalty,
                                            sampling.frequency_penalty, sampling.presence_penalty))
    if greedy:
        add(ll.llama_sampler_init_greedy())
        return chain
    add(ll.llama_sampler_init_top_k(sampling.top_k))
    add(ll.llama_sampler_init_typical(sampling.typical_p, 1))
    add(ll.llama_sampler_init_top_p(sampling.top_p, 1))
    add(ll.llama_sampler_init_min_p(sampling.min_p, 1))
    add(ll.llama_sampler_init_temp(sampling.temperature))
    seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
    add(ll.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain


def _candidates_penalties_need(sampling: Sampling, last_n: int, top_k: int) -> int:
    """How many of the best candidates the penalties may be restricted to without changing what top-k keeps
    after them, or 0 for all of them.

    Penalties that only lower logits (repeat_penalty >= 1, frequency and presence >= 0) touch at most `last_n`
    distinct tokens, so after them the best `top_k` are among the best `top_k + last_n` before them.
    """
    lowers_only = sampling.repeat_penalty >= 1 and sampling.frequency_penalty >= 0 and sampling.presence_penalty >= 0
    return top_k + last_n if lowers_only and top_k > 0 else 0


def grammar_for(response_format: Any) -> str | None:
    """The GBNF grammar OpenAI's `response_format` asks for, or None for plain text.

    Raises:
        InvalidRequest: an unknown type, or a schema that cannot be turned into a grammar (names the part).
    """
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or not isinstance(response_format.get("type"), str):
        raise InvalidRequest("`response_format` must be an object with a string `type`", param="response_format")
    kind = response_format["type"]
    if kind == "text":
        return None
    from llama_cpp.llama_grammar import JSON_GBNF

    if kind == "json_object":
        schema = response_format.get("schema")
        return JSON_GBNF if schema is None else _schema_grammar(schema, "response_format.schema")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise InvalidRequest("`response_format.json_schema` must be an object with a `schema` object",
                                 param="response_format")
        schema = spec.get("schema")
        return JSON_GBNF if schema is None else _schema_grammar(schema, "response_format.json_schema.schema")
    raise InvalidRequest(f"`response_format.type` {kind!r} is not supported: use text, json_object or json_schema",
                         param="response_format")


def _schema_grammar(schema: Any, where: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    if not isinstance(schema, dict):
        raise InvalidRequest(f"`{where}` must be a JSON Schema object", param="response_format")
    check_schema(schema, where)  # bounded before the converter runs: it writes what llama.cpp must parse
    try:
        grammar = json_schema_to_gbnf(json.dumps(schema))
    except (ValueError, KeyError, TypeError, NotImplementedError, AssertionError, RecursionError) as err:
        raise InvalidRequest(f"`{where}` cannot be turned into a grammar: {_reason(err)}",
                             param="response_format") from err
    check_grammar(grammar, where)
    return grammar


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    return text
