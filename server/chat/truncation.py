"""Prompts longer than the context, cut as Ollama cuts them (ollama/ollama server/prompt.go, chatPrompt): the oldest
messages go first, system messages and the last message always stay; a raw prompt loses its oldest tokens."""
from __future__ import annotations

from typing import Callable


def answer_room(n_ctx: int, max_tokens: int | None) -> int:
    """Tokens a truncated prompt leaves for the answer: `max_tokens`, or a quarter of the context when it is
    unset or larger (Ollama shifts the context while generating; this engine stops at its end instead)."""
    quarter = max(1, n_ctx // 4)
    return min(max_tokens, quarter) if max_tokens else quarter


def fit_messages(messages: list[dict], count: Callable[[list[dict]], int], limit: int) -> list[dict]:
    """The longest tail of `messages` whose prompt (`count` tokens) fits `limit`, with the system messages before
    it kept; the last message always stays (a prompt still too long is the engine's 400 to give)."""

    def kept(start: int) -> list[dict]:
        return [m for m in messages[:start] if m.get("role") == "system"] + messages[start:]

    if count(messages) <= limit:
        return messages
    low, high = 1, len(messages) - 1  # kept(high) fits or is the shortest there is; kept(low - 1) does not fit
    while low < high:  # fewer messages kept never count more tokens: bisect for the earliest start that fits
        middle = (low + high) // 2
        if count(kept(middle)) <= limit:
            high = middle
        else:
            low = middle + 1
    return kept(high)


def fit_tokens(tokens: list[int], limit: int) -> list[int]:
    """A raw prompt cut to `limit` tokens: its first token (BOS) and the most recent ones."""
    if len(tokens) <= limit or limit < 2:
        return tokens
    return tokens[:1] + tokens[len(tokens) - (limit - 1):]
