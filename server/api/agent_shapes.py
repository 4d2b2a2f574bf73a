"""OpenAI's chat shapes for answers with tool calls and reasoning: the whole message, and the stream's deltas
(docs/api.md, Agents). Counts the calls and reasoning tokens served (GET /stats: tool_calls, reasoning_tokens)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..chat.answer import AnswerReader, DeltaStream
from ..engine.jobs import Finished, FinishReason
from ..engine.stats import ServingStats


@dataclass(frozen=True)
class AgentOutput:
    """How one request's answer is read (`reader`), how its reasoning is counted in tokens, and where."""

    reader: AnswerReader
    count_tokens: Callable[[str], int]
    stats: ServingStats | None = None

    def message(self, text: str, end: Finished) -> tuple[dict, str, int]:
        """The assistant message of the whole `text`, its finish_reason and its reasoning tokens."""
        message = self.reader.message(text)
        reasoning = self._counted(len(message.get("tool_calls", ())), message.get("reasoning_content", ""))
        return message, finish_reason(end, bool(message.get("tool_calls"))), reasoning

    def deltas(self, events: Iterator[Any]) -> Iterator[tuple[dict | None, Finished | None, int]]:
        """(delta, None, 0) for each delta of the stream, then (None, Finished, reasoning tokens)."""
        stream, reasoning = DeltaStream(self.reader), []
        for event in events:
            if isinstance(event, Finished):
                for delta in stream.finish():
                    reasoning.append(delta.get("reasoning_content", ""))
                    yield delta, None, 0
                yield None, event, self._counted(stream.n_calls, "".join(reasoning))
                return
            for delta in stream.push(event):
                reasoning.append(delta.get("reasoning_content", ""))
                yield delta, None, 0

    def _counted(self, calls: int, reasoning: str) -> int:
        tokens = self.count_tokens(reasoning) if reasoning else 0
        if self.stats is not None:
            self.stats.count_agent_output(calls, tokens)
        return tokens


def finish_reason(end: Finished, called: bool) -> FinishReason:
    """OpenAI's: TOOL_CALLS when the model stopped after calling, else the engine's reason."""
    return FinishReason.TOOL_CALLS if called and end.reason == FinishReason.STOP else end.reason
