"""Bodies of llama-server's own endpoints (/completion, /infill, /tokenize, /detokenize), parsed and checked.

Their fields are llama-server's (tools/server/README.md): `n_predict` for max_tokens (-1: no limit, 0: evaluate
the prompt only), `seed` -1 for a random one, `grammar` or `json_schema` to constrain the output,
`response_fields` to pick fields of the answer. The sampling fields llama-server shares with OpenAI's are checked
by the OpenAI parser (server.api.params); other fields are ignored, as llama-server ignores unknown ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..chat.fim import FimRequest
from ..engine.sampling import grammar_for
from ..errors import InvalidRequest
from .params import GenerationRequest, parse_completion

# llama-server's fields that mean what OpenAI's of the same name mean (server.api.params checks them).
SHARED_FIELDS = ("model", "stream", "temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n",
                 "presence_penalty", "frequency_penalty", "stop", "keep_alive")
Prompt = str | list  # a string, or tokens mixed with strings (llama-server's "mixed" prompt)


@dataclass(frozen=True)
class NativeCompletion:
    """A /completion or /infill request: what to complete, and how."""

    request: GenerationRequest  # model, sampling, stream, keep_alive
    prompt: Prompt
    n_predict: int | None  # None: no limit; 0: evaluate the prompt only
    grammar: str | None = None
    response_fields: tuple[str, ...] = ()
    fim: FimRequest | None = None  # /infill


def parse_native_completion(body: dict, infill: bool = False) -> NativeCompletion:
    """llama-server's /completion body, or with `infill` its /infill body (input_prefix, input_suffix,
    input_extra, and `prompt` as the text just before the gap).

    Raises:
        InvalidRequest: a missing field or a field of the wrong type.
    """
    shared = {name: body[name] for name in SHARED_FIELDS if name in body}
    seed = body.get("seed")
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool) and seed < 0):
        shared["seed"] = seed  # -1 (or any negative): a random seed, as llama-server
    request = parse_completion(shared)
    prompt = _prompt(body.get("prompt", ""))
    fim = _infill(body, prompt) if infill else None
    return NativeCompletion(request=request, prompt=prompt, n_predict=_n_predict(body), grammar=_grammar(body),
                            response_fields=_strings(body, "response_fields"), fim=fim)


def parse_tokens(body: dict, name: str = "tokens") -> list[int]:
    """A list of token ids (/detokenize's `tokens`).

    Raises:
        InvalidRequest: not a list of non-negative integers.
    """
    tokens = body.get(name, [])
    if not isinstance(tokens, list) or not all(_is_token(t) for t in tokens):
        raise InvalidRequest(f"`{name}` must be a list of token ids (non-negative integers)")
    return tokens


def flag(body: dict, name: str, default: bool) -> bool:
    """A boolean field.

    Raises:
        InvalidRequest: present and not true or false.
    """
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"`{name}` must be true or false")
    return value


def text_field(body: dict, name: str, default: str | None = "") -> str:
    """A string field.

    Raises:
        InvalidRequest: present and not a string, or absent where there is no default.
    """
    value = body.get(name, default)
    if not isinstance(value, str):
        raise InvalidRequest(f"`{name}` must be a string")
    return value


def _prompt(value: Any) -> Prompt:
    """One prompt: a string, token ids, or both mixed; a list of one prompt is that prompt."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
        value = value[0]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(_is_token(v) or isinstance(v, str) for v in value):
        if len(value) > 1 and all(isinstance(v, str) for v in value):
            raise InvalidRequest("`prompt`: one prompt a request (a list of strings is several prompts)")
        return value
    raise InvalidRequest("`prompt` must be a string, a list of token ids, or token ids mixed with strings")


def _infill(body: dict, prompt: Prompt) -> FimRequest:
    if not isinstance(prompt, str):
        raise InvalidRequest("`prompt` of /infill must be a string (the text just before the gap)")
    extra = body.get("input_extra", [])
    if not isinstance(extra, list) or not all(
            isinstance(c, dict) and isinstance(c.get("text", ""), str) and isinstance(c.get("filename", ""), str)
            for c in extra):
        raise InvalidRequest('`input_extra` must be a list of {"filename": string, "text": string}')
    return FimRequest(prefix=text_field(body, "input_prefix"), suffix=text_field(body, "input_suffix"),
                      prompt=prompt, extra=tuple(extra), repo_level=True)


def _n_predict(body: dict) -> int | None:
    value = body.get("n_predict", body.get("max_tokens", -1))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest("`n_predict` must be an integer (-1: no limit)")
    return None if value < 0 else value


def _grammar(body: dict) -> str | None:
    grammar, schema = body.get("grammar"), body.get("json_schema")
    if grammar not in (None, "") and schema is not None:
        raise InvalidRequest("give `grammar` or `json_schema`, not both")
    if grammar not in (None, ""):
        if not isinstance(grammar, str):
            raise InvalidRequest("`grammar` must be a GBNF grammar (a string)")
        return grammar
    if schema is None:
        return None
    return grammar_for({"type": "json_schema", "json_schema": {"schema": schema}})


def _strings(body: dict, name: str) -> tuple[str, ...]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRequest(f"`{name}` must be a list of strings")
    return tuple(value)


def _is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
