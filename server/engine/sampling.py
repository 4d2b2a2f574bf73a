"""Per-request sampler chains (llama.cpp's samplers, grammar included) built from the request's settings.

The order and defaults are llama-cpp-python's (`Llama._init_sampler`), so a request samples as it did
before the batching engine: penalties, grammar, then greedy for temperature 0, else top-k, typical, top-p,
min-p, temperature and a seeded draw.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import InvalidRequest

PENALTY_LAST_N = 64  # llama-cpp-python's last_n_tokens_size


@dataclass(frozen=True)
class Sampling:
    """How one request picks its tokens."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    grammar: str | None = None  # GBNF, from response_format

    @classmethod
    def of(cls, values: Mapping[str, Any], grammar: str | None = None) -> "Sampling":
        """The sampling of a parsed request (`GenerationRequest.sampling`'s keys)."""
        known = {name: values[name] for name in cls.__dataclass_fields__
                 if name != "grammar" and values.get(name) is not None}
        return cls(**known, grammar=grammar)


def make_chain(sampling: Sampling, vocab: Any) -> Any:
    """A new llama.cpp sampler chain for one request (the caller frees it with llama_sampler_free).

    Raises:
        InvalidRequest: the grammar does not compile.
    """
    import llama_cpp as ll

    chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
    add = lambda sampler: ll.llama_sampler_chain_add(chain, sampler)  # noqa: E731
    if (sampling.repeat_penalty, sampling.frequency_penalty, sampling.presence_penalty) != (1.0, 0.0, 0.0):
        # Only when one is set: it scans the whole vocabulary every token (262k entries for Gemma 3).
        add(ll.llama_sampler_init_penalties(ll.llama_vocab_n_tokens(vocab), PENALTY_LAST_N, sampling.repeat_penalty,
                                            sampling.frequency_penalty, sampling.presence_penalty))
    if sampling.grammar is not None:
        grammar = ll.llama_sampler_init_grammar(vocab, sampling.grammar.encode(), b"root")
        if not grammar:
            ll.llama_sampler_free(chain)
            raise InvalidRequest("response_format: the schema gives a grammar llama.cpp cannot compile")
        add(grammar)
    if sampling.temperature == 0:
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


def grammar_for(response_format: Any) -> str | None:
    """The GBNF grammar OpenAI's `response_format` asks for, or None for plain text.

    Raises:
        InvalidRequest: an unknown type, or a schema that cannot be turned into a grammar (names the part).
    """
    if response_format is None:
        return None
    if not isinstance(response_format, dict) or not isinstance(response_format.get("type"), str):
        raise InvalidRequest("`response_format` must be an object with a string `type`")
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
            raise InvalidRequest("`response_format.json_schema` must be an object with a `schema` object")
        schema = spec.get("schema")
        return JSON_GBNF if schema is None else _schema_grammar(schema, "response_format.json_schema.schema")
    raise InvalidRequest(f"`response_format.type` {kind!r} is not supported: use text, json_object or json_schema")


def _schema_grammar(schema: Any, where: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    if not isinstance(schema, dict):
        raise InvalidRequest(f"`{where}` must be a JSON Schema object")
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except (ValueError, KeyError, TypeError, NotImplementedError, AssertionError, RecursionError) as err:
        raise InvalidRequest(f"`{where}` cannot be turned into a grammar: {_reason(err)}") from err


def _reason(err: Exception) -> str:
    text = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    return text
