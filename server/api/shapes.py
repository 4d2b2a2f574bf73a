"""OpenAI's and Shimmy's answers of a job's events (text pieces, then `Finished`): one object, or SSE events.

The shapes are llama-cpp-python's own, so clients see what they saw before the engine.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Iterator

from ..engine.jobs import Finished, FinishReason
from .agent_shapes import AgentOutput, finish_reason
from .streaming import DONE_EVENT, json_event, text_event

Event = Any  # str (a piece of text) or Finished


class Shapes:
    """OpenAI's objects for one answer (llama-cpp-python's shapes), chat or text completion."""

    def __init__(self, model_id: str, chat: bool, include_usage: bool = False, agent: AgentOutput | None = None):
        """`agent`: how to read a chat answer's tool calls and reasoning (None: its text is the content)."""
        self.model_id = model_id
        self.chat = chat
        self.include_usage = include_usage
        self.agent = agent
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4()}"
        self.created = int(time.time())

    def whole(self, text: str, end: Finished) -> dict:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": end.reason}
        if self.agent is not None:
            message, reason, reasoning = self.agent.message(text, end)
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reason}
            return {**self._head("chat.completion"), "choices": [choice], "usage": usage(end, reasoning)}
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": end.reason}
        else:
            choice = {"text": text, **choice}
        return {**self._head("chat.completion" if self.chat else "text_completion"), "choices": [choice],
                "usage": usage(end)}

    def stream(self, events: Iterator[Event]) -> Iterator[str]:
        if self.chat:
            yield json_event(self._chunk({"role": "assistant"}, None))
        if self.agent is not None:
            yield from self._agent_stream(events)
            return
        for event in events:
            if isinstance(event, Finished):
                yield json_event(self._chunk({} if self.chat else "", event.reason))
                if self.include_usage:
                    yield json_event({**self._head(self._object), "choices": [], "usage": usage(event)})
            else:
                yield json_event(self._chunk({"content": event} if self.chat else event, None))
        yield DONE_EVENT

    def _agent_stream(self, events: Iterator[Event]) -> Iterator[str]:
        """Deltas of content, reasoning_content and tool_calls, then the finish (`tool_calls` after calls)."""
        assert self.agent is not None
        called = False
        for delta, end, reasoning in self.agent.deltas(events):
            if end is None:
                called = called or "tool_calls" in delta
                yield json_event(self._chunk(delta, None))
                continue
            yield json_event(self._chunk({}, finish_reason(end, called)))
            if self.include_usage:
                yield json_event({**self._head(self._object), "choices": [], "usage": usage(end, reasoning)})
        yield DONE_EVENT

    @property
    def _object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def _chunk(self, delta: Any, finish_reason: FinishReason | None) -> dict:
        if self.chat:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"text": delta, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        return {**self._head(self._object), "choices": [choice]}

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model_id}


def usage(end: Finished, reasoning_tokens: int | None = None) -> dict:
    """OpenAI's usage; `reasoning_tokens` (of the completion's) for a model that thinks."""
    counts = {"prompt_tokens": end.prompt_tokens, "completion_tokens": end.completion_tokens,
              "total_tokens": end.prompt_tokens + end.completion_tokens,
              "prompt_tokens_details": {"cached_tokens": end.cached_tokens}}
    if reasoning_tokens is not None:
        counts["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    return counts


def shimmy_stream(events: Iterator[Event]) -> Iterator[str]:
    """Shimmy's generate stream: `data: <token text>` events, ending `data: [DONE]`."""
    for event in events:
        if not isinstance(event, Finished) and event:
            yield text_event(event)
    yield DONE_EVENT
