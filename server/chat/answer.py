"""A chat answer read back from the model's text: reasoning, content and tool calls, as one OpenAI message or
as the deltas of a stream (calls keyed by `index`, the `id` and `name` in a call's first delta, `arguments` in
pieces), as OpenAI streams them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .jsonscan import ScannedCall, parses
from .reasoning import split_reasoning
from .tool_formats import Parsed, ToolFormat


@dataclass(frozen=True)
class Answer:
    content: str
    reasoning: str = ""
    calls: tuple[ScannedCall, ...] = ()


@dataclass
class AnswerReader:
    """How to read one request's answer: its tool-call format (None: calls are not parsed) and whether the
    model thinks (`opened`: the prompt left a `<think>` open)."""

    tool_format: ToolFormat | None = None
    thinks: bool = False
    opened: bool = False
    new_id: Callable[[], str] = lambda: ""
    ids: list[str] = field(default_factory=list)

    @property
    def plain(self) -> bool:
        """Whether the text is the content as it is (no calls, no reasoning)."""
        return self.tool_format is None and not self.thinks

    def read(self, text: str, partial: bool = False) -> Answer:
        """The answer in `text`. Whole (`partial` False): the calls that closed with arguments that parse, up to
        the first that did not (cut short by max_tokens); without one, the text after the reasoning is content."""
        reasoning, rest = split_reasoning(text, self.opened, partial) if self.thinks else ("", text)
        if self.tool_format is None:
            return Answer(rest, reasoning)
        parsed = self.tool_format.parse(rest, partial)
        if not partial:
            whole = [call.complete and parses(call.arguments) for call in parsed.calls]
            kept = whole.index(False) if False in whole else len(whole)  # calls cut short end the answer
            parsed = Parsed(rest) if parsed.calls and not kept else Parsed(parsed.content, parsed.calls[:kept])
        return Answer(parsed.content, reasoning, parsed.calls)

    def call_id(self, index: int) -> str:
        """The id of call `index`, the same in every delta and in the whole message."""
        while len(self.ids) <= index:
            self.ids.append(self.new_id())
        return self.ids[index]

    def message(self, text: str) -> dict:
        """OpenAI's assistant message for the whole `text`."""
        answer = self.read(text)
        message: dict = {"role": "assistant", "content": answer.content if answer.content or not answer.calls
                         else None}
        if answer.reasoning:
            message["reasoning_content"] = answer.reasoning
        if answer.calls:
            message["tool_calls"] = [self._call(i, call) for i, call in enumerate(answer.calls)]
        return message

    def _call(self, index: int, call: ScannedCall) -> dict:
        return {"id": self.call_id(index), "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}}


class DeltaStream:
    """The deltas of a streamed answer: `push` each piece of text, `finish` at the end."""

    def __init__(self, reader: AnswerReader):
        self._reader = reader
        self._text = ""
        self._sent = Answer("", "", ())
        self._args_sent: list[int] = []

    def push(self, piece: str) -> list[dict]:
        self._text += piece
        return self._deltas(self._reader.read(self._text, partial=True))

    def finish(self) -> list[dict]:
        """The deltas left once the text is complete (what was held back as maybe a tag or a call)."""
        answer = self._reader.read(self._text)
        if len(answer.calls) < len(self._sent.calls):  # a call cut short: what was streamed stands
            answer = self._reader.read(self._text, partial=True)
        return self._deltas(answer)

    @property
    def n_calls(self) -> int:
        """The calls streamed so far."""
        return len(self._args_sent)

    def _deltas(self, answer: Answer) -> list[dict]:
        deltas = []
        for key, now, before in (("reasoning_content", answer.reasoning, self._sent.reasoning),
                                 ("content", answer.content, self._sent.content)):
            if len(now) > len(before) and now.startswith(before):
                deltas.append({key: now[len(before):]})
        for index, call in enumerate(answer.calls):
            deltas.extend(self._call_deltas(index, call))
        self._sent = Answer(max(answer.content, self._sent.content, key=len),
                            max(answer.reasoning, self._sent.reasoning, key=len), answer.calls)
        return deltas

    def _call_deltas(self, index: int, call: ScannedCall) -> list[dict]:
        if index == len(self._args_sent):
            self._args_sent.append(len(call.arguments))
            first = {"index": index, "id": self._reader.call_id(index), "type": "function",
                     "function": {"name": call.name, "arguments": call.arguments}}
            return [{"tool_calls": [first]}]
        sent = self._args_sent[index]
        if len(call.arguments) <= sent:
            return []
        self._args_sent[index] = len(call.arguments)
        return [{"tool_calls": [{"index": index, "function": {"arguments": call.arguments[sent:]}}]}]
