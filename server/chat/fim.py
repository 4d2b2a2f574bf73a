"""Fill-in-the-middle prompts, as llama.cpp's server builds them for `/infill` (tools/server, format_infill).

The order is prefix, suffix, middle (PSM), the tokens the loaded vocabulary names (llama.cpp reads them from the
GGUF's metadata or finds them by their text; core/fim.py answers the same from the file):

    [FIM_REP]myproject\\n[FIM_SEP]{filename}\\n{text}...[FIM_SEP]filename\\n   (/infill, and input_extra)
    [BOS][FIM_PRE]{prefix}{prompt}[FIM_SUF]{suffix}[FIM_MID]

which is Qwen2.5-Coder's `<|fim_prefix|>...<|fim_suffix|>...<|fim_middle|>`, CodeLlama's `▁<PRE>...▁<SUF>...▁<MID>`
and StarCoder2's `<fim_prefix>...<fim_suffix>...<fim_middle>`. Without FIM_SEP, extra chunks are set apart by a
"--- snippet ---" line, as llama.cpp does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import InvalidRequest

NO_TOKEN = -1  # LLAMA_TOKEN_NULL
SNIPPET_SEPARATOR = "\n\n--- snippet ---\n\n"


@dataclass(frozen=True)
class FimTokens:
    """The vocabulary's fill-in-the-middle tokens; `rep` and `sep` (repository-level FIM) may be missing."""

    pre: int
    suf: int
    mid: int
    rep: int = NO_TOKEN
    sep: int = NO_TOKEN


@dataclass(frozen=True)
class FimRequest:
    """What to fill: the text before the gap (`prefix`, then `prompt`), after it, and other files for context."""

    prefix: str
    suffix: str
    prompt: str = ""
    extra: Sequence[dict] = ()  # {"filename", "text"} each (llama-server's input_extra)
    repo_level: bool = False  # llama-server's /infill: the repository header even without extra files


def fim_tokens(vocab: Any) -> FimTokens | None:
    """The loaded vocabulary's FIM tokens, or None unless it has prefix, suffix and middle."""
    import llama_cpp as ll

    pre, suf, mid = ll.llama_vocab_fim_pre(vocab), ll.llama_vocab_fim_suf(vocab), ll.llama_vocab_fim_mid(vocab)
    if NO_TOKEN in (pre, suf, mid):
        return None
    return FimTokens(pre, suf, mid, ll.llama_vocab_fim_rep(vocab), ll.llama_vocab_fim_sep(vocab))


def fim_prompt(handle: Any, model_id: str, request: FimRequest, batch_budget: int | None = None,
               n_predict: int | None = None) -> list[int]:
    """The FIM prompt of `request` for the loaded model (`handle`: server.residency.loading.LlamaModelHandle).

    `batch_budget` (llama-server's /infill: N_BATCH) keeps the prefix's last 3/4 of it and the suffix's first
    1/4, and the extra context in what the context leaves; None keeps everything (the context check applies).

    Raises:
        InvalidRequest: the model's vocabulary has no FIM tokens.
    """
    tokens = fim_tokens(handle.vocab)
    if tokens is None:
        raise InvalidRequest(f"model {model_id} does not support insert: its vocabulary has no fill-in-the-middle "
                             "tokens, so it cannot complete between a prefix and a suffix; use a code model that "
                             "has them (Qwen2.5-Coder, CodeLlama, StarCoder2, ...)", param="suffix")
    tokenize = lambda text: handle.tokenize(text, add_bos=False, special=False) if text else []  # noqa: E731
    prefix, suffix = tokenize(request.prefix), tokenize(request.suffix)
    middle = handle.tokenize(request.prompt, add_bos=False, special=True) if request.prompt else []
    extra = _extra_context(tokens, request.extra, tokenize) if request.repo_level or request.extra else []
    if batch_budget is not None:
        take = min(len(prefix), 3 * (batch_budget // 4))
        prefix = prefix[len(prefix) - take:]
        suffix = suffix[:max(0, batch_budget // 4 - (2 + len(middle)))]
        room = max(0, handle.n_ctx - batch_budget - 2 * (n_predict or 0))
        extra = extra[len(extra) - min(room, len(extra)):]
    bos = [handle.model.token_bos()] if handle.model.add_bos_token() else []
    return extra + bos + [tokens.pre] + prefix + middle + [tokens.suf] + suffix + [tokens.mid]


def _extra_context(tokens: FimTokens, extra: Sequence[dict], tokenize: Any) -> list[int]:
    """Other files before the FIM prefix: the repository-level pattern when the vocabulary has it."""
    out: list[int] = []
    if tokens.rep != NO_TOKEN:
        out += [tokens.rep] + tokenize("myproject\n")
    for chunk in extra:
        if tokens.sep != NO_TOKEN:
            out += [tokens.sep] + tokenize(f"{chunk.get('filename') or 'tmp'}\n")
        else:
            out += tokenize(SNIPPET_SEPARATOR)
        out += tokenize(chunk.get("text") or "")
    if tokens.sep != NO_TOKEN:
        out += [tokens.sep] + tokenize("filename\n")
    return out
