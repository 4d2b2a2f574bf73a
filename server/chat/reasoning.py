"""Reasoning apart from the answer: what a thinking model (Qwen3, DeepSeek-R1 distills, ...) writes between
`<think>` and `</think>` is returned as `reasoning_content`, never inside `content` (docs/api.md, Agents)."""
from __future__ import annotations

import re

from ..errors import InvalidRequest
from .tool_formats import held_back

OPEN, CLOSE = "<think>", "</think>"


def template_thinks(template: str | None) -> bool:
    """Whether a chat template is a thinking model's (it writes or strips `<think>` blocks)."""
    return bool(template) and CLOSE in template


def template_switches_thinking(template: str | None) -> bool:
    """Whether a template turns thinking off when rendered with `enable_thinking=False` (Qwen3's does)."""
    return bool(template) and "enable_thinking" in template


def prompt_opens_thinking(prompt: str) -> bool:
    """Whether the rendered prompt ends inside an open `<think>` (R1 distills start the answer there)."""
    return prompt.rstrip().endswith(OPEN)


def prompt_closes_thinking(prompt: str) -> bool:
    """Whether the rendered prompt ends after a closed block (thinking turned off: Qwen3's empty one)."""
    return prompt.rstrip().endswith(CLOSE)


def after_reasoning(grammar: str, opened: bool) -> str:
    """`grammar` (GBNF) preceded by the model's reasoning: the rest of a block the prompt opened (`opened`), else
    an optional one, so that a thinking model still thinks before an answer the grammar constrains (R1 distills
    start inside the block: without it their constrained answer would be read as reasoning)."""
    body = re.sub(r"^root ::=", "answer-root ::=", grammar, count=1, flags=re.M)
    block = '( [^<] | "<" [^/] )* "</think>" [ \\n]*'  # reasoning that holds no "</" (the tag's start)
    root = f"root ::= {block} answer-root" if opened else f'root ::= ( "<think>" {block} )? answer-root'
    return f"{body}\n{root}\n"


def split_reasoning(text: str, opened: bool, partial: bool = False) -> tuple[str, str]:
    """(reasoning, the rest) of a thinking model's `text`; `opened`: the prompt left a `<think>` open.
    `partial`: the model is still writing, so a tag cut short is held back from both. A block never closed
    is all reasoning (the answer was cut off inside it)."""
    if not opened:
        stripped = text.lstrip()
        if stripped.startswith(OPEN):
            text = stripped[len(OPEN):]
        elif partial and OPEN.startswith(stripped):
            return "", ""  # nothing yet, or a `<think>` cut short
        else:
            return "", text
    end = text.find(CLOSE)
    if end < 0:
        kept = text[:len(text) - held_back(text, CLOSE)] if partial else text
        return kept.lstrip(), ""
    return text[:end].lstrip(), text[end + len(CLOSE):].lstrip()


_EFFORTS = ("none", "minimal", "low", "medium", "high")


def parse_thinking(body: dict) -> bool | None:
    """Whether the request wants the model to think: None when it does not say. Read from llama-server's
    `chat_template_kwargs.enable_thinking`, OpenAI's `reasoning_effort` ("none" turns it off) or Ollama's
    `think` (true, false or a level), in that order.

    Raises:
        InvalidRequest: one of them is of the wrong type.
    """
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise InvalidRequest("`chat_template_kwargs` must be an object", param="chat_template_kwargs")
    enable = (kwargs or {}).get("enable_thinking")
    if enable is not None:
        if not isinstance(enable, bool):
            raise InvalidRequest("`chat_template_kwargs.enable_thinking` must be true or false",
                                 param="chat_template_kwargs")
        return enable
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in _EFFORTS:
            raise InvalidRequest(f"`reasoning_effort` must be one of {', '.join(_EFFORTS)}", param="reasoning_effort")
        return effort != "none"
    think = body.get("think")
    if think is None or isinstance(think, bool):
        return think
    if think in ("low", "medium", "high"):
        return True
    raise InvalidRequest('`think` must be true, false, "low", "medium" or "high"', param="think")
