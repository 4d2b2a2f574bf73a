"""A chat turn with tools and reasoning: the prompt rendered by the model's template (with `tools=` and
`enable_thinking`, as transformers' apply_chat_template), the grammar its calls must follow, and the reader of
its answer (docs/api.md, Agents)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable

from .answer import AnswerReader
from .families import content_text
from .prompts import ChatFormat, ChatPrompt
from .reasoning import (CLOSE, after_reasoning, prompt_closes_thinking, prompt_opens_thinking,
                        template_switches_thinking, template_thinks)
from .tool_formats import FORMATS, format_for_template, template_takes_tools
from .tools import ToolUse, described, new_call_id, tool_grammar


@dataclass(frozen=True)
class ChatTurn:
    """What a chat request becomes: its prompt, the grammar of its answer (GBNF; lazy when triggers are
    given: it engages once the text matches a pattern or a trigger token comes), and how its answer is read."""

    prompt: ChatPrompt
    reader: AnswerReader
    grammar: str | None = None
    triggers: tuple[str, ...] = ()
    trigger_tokens: tuple[int, ...] = ()  # a call's opening when one token spells it

    @property
    def special(self) -> bool:
        """Whether control tokens must reach the reader as text (`<|python_tag|>`, `[TOOL_CALLS]`)."""
        return self.reader.tool_format is not None


def plan_turn(chat: ChatFormat, messages: list[dict], use: ToolUse | None, thinking: bool | None,
              token_of: Callable[[str], int | None], tool_format: str | None = None) -> ChatTurn:
    """The turn for `messages` on a model with chat format `chat`; `thinking` False turns reasoning off where
    the template can; `token_of` gives the one token that spells a text, if one does (a lazy grammar then
    triggers on the token); `tool_format` names a format instead of the template's.

    Raises:
        InvalidRequest: the messages do not fit the template, or a tool's schema gives no grammar.
    """
    template = chat.template if chat.has_template else None
    fmt = FORMATS[tool_format] if tool_format else format_for_template(template)
    kwargs: dict[str, Any] = {}
    if thinking is False and template_switches_thinking(template):
        kwargs["enable_thinking"] = False
    calling = use is not None and use.calls_allowed
    native = template_takes_tools(template, fmt)
    messages = [_for_template(message) for message in messages]
    if not native:
        messages = _generic_messages(messages, use.offered() if calling else [])
    elif calling:
        kwargs["tools"] = list(use.tools)
    prompt = chat.render(messages, **kwargs)
    thinks = template_thinks(template)
    reader = AnswerReader(fmt if calling else None, thinks, thinks and prompt_opens_thinking(prompt.text),
                          partial(new_call_id, fmt.id_length))
    if not calling:
        return ChatTurn(prompt, reader)
    grammar = tool_grammar(fmt, use)
    thinking_first = reader.thinks and not prompt_closes_thinking(prompt.text)
    if use.forced or fmt.name == "generic":
        return ChatTurn(prompt, reader, after_reasoning(grammar, reader.opened) if thinking_first else grammar)
    _, tokens = fmt.triggers(token_of)
    if not tokens:
        # The opener spans several tokens of this vocabulary: the token that completes it may carry text the
        # grammar refuses, and llama.cpp then throws inside llama_sampler_accept, which aborts the whole process.
        # The call is read from free text instead (one that does not parse comes back as content).
        return ChatTurn(prompt, reader)
    if thinking_first:
        # A call opens after the reasoning: a `<tool_call>` the model muses about while thinking is not one. The
        # opener is one token, so the token completing the pattern carries nothing after it.
        patterns, _ = fmt.triggers(lambda _: None)
        return ChatTurn(prompt, reader, grammar, tuple(rf"[\s\S]*?{re.escape(CLOSE)}{p}" for p in patterns))
    return ChatTurn(prompt, reader, grammar, (), tokens)


def _for_template(message: dict) -> dict:
    """A message as Hugging Face templates read it: a tool call's `arguments` as an object, not JSON text
    (they write `arguments | tojson`), and no null content beside calls."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list) or not calls:
        return message
    fixed = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            try:
                function = {**function, "arguments": json.loads(function["arguments"])}
            except ValueError:
                pass  # left as written: the template shows it as text
            call = {**call, "function": function}
        fixed.append(call)
    return {**message, "tool_calls": fixed, "content": message.get("content") or ""}


def _generic_messages(messages: list[dict], tools: list[dict]) -> list[dict]:
    """Messages for a template without tools (llama-server's generic format): the tools described in the
    system message, calls and results written in the JSON the model is asked to answer in."""
    out = []
    for message in messages:
        role = message.get("role")
        if role == "assistant" and isinstance(message.get("tool_calls"), list) and message["tool_calls"]:
            calls = [{"name": c["function"].get("name"), "arguments": c["function"].get("arguments"), "id": c.get("id")}
                     for c in message["tool_calls"] if isinstance(c, dict) and isinstance(c.get("function"), dict)]
            message = {"role": "assistant", "content": json.dumps({"tool_calls": calls}, ensure_ascii=False)}
        elif role == "tool":
            result = {"tool_response": {"tool_call_id": message.get("tool_call_id"), "name": message.get("name"),
                                        "content": content_text(message.get("content"))}}
            message = {"role": "user", "content": json.dumps(result, ensure_ascii=False)}
        out.append(message)
    if tools:
        out = _with_system(out, described(tools))
    return out


def _with_system(messages: list[dict], text: str) -> list[dict]:
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def with_grammar(turn: ChatTurn, grammar: str | None) -> ChatTurn:
    """The turn constrained by `grammar` (response_format's) when tools leave its answer free."""
    return turn if turn.grammar is not None or grammar is None else replace(turn, grammar=grammar)
