"""The backend's streamed chat as OpenAI's Responses answer: the response object with its `output` items (a
`reasoning` item, a `message` with `output_text`, `function_call`s) and usage, and the events of a stream, each
with its `sequence_number`. The stream always ends with `response.completed`; a response cut by
`max_output_tokens` says so in its `status` ("incomplete") and `incomplete_details`."""
from __future__ import annotations

import time
from typing import Iterator

from proxy.backend.chat import ChatAnswer, Piece, chat_pieces, new_id
from proxy.backend.upstream import Upstream
from proxy.errors import ProxyError
from proxy.responses.request import ResponsesRequest

TEXT_KINDS = {"text": ("message", "output_text"), "reasoning": ("reasoning", "reasoning_text")}


class ResponseTranslator:
    """One response: `events(upstream)` yields its stream events as the backend's pieces come; `response()` is
    the response object (complete once the events have all come)."""

    def __init__(self, asked: ResponsesRequest):
        self.asked = asked
        self.id = new_id("resp_")
        self.created_at = int(time.time())
        self.answer = ChatAnswer()
        self.output: list[dict] = []
        self._open: int | None = None  # the output item being streamed
        self._call_items: dict[int, int] = {}  # tool call index -> its output item
        self._sequence = 0

    def events(self, upstream: Upstream) -> Iterator[dict]:
        """Raises: ProxyError when the backend fails (before or part way)."""
        yield self._event("response.created", response=self.response("in_progress"))
        yield self._event("response.in_progress", response=self.response("in_progress"))
        for piece in chat_pieces(upstream, self.answer):
            yield from self._on(piece)
        yield from self._close()
        yield self._event("response.completed", response=self.response())

    def response(self, status: str | None = None) -> dict:
        cut = self.answer.cut_short()
        status = status or ("incomplete" if cut else "completed")
        usage = None if status == "in_progress" else self._usage()
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "model": self.asked.model, "output": [dict(item) for item in self.output] if usage else [],
                "error": None, "incomplete_details": {"reason": "max_output_tokens"} if cut and usage else None,
                "usage": usage, "store": False, "previous_response_id": None, "truncation": "disabled",
                "reasoning": {"effort": None, "summary": None}, **self.asked.echoed}

    def _usage(self) -> dict:
        answer = self.answer
        return {"input_tokens": answer.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": answer.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": answer.prompt_tokens + answer.completion_tokens}

    def _on(self, piece: Piece) -> Iterator[dict]:
        if piece.kind in TEXT_KINDS:
            yield from self._text(piece.kind, piece.text)
        elif piece.kind == "call" and piece.call is not None:
            yield from self._close()
            item = {"id": new_id("fc_"), "type": "function_call", "status": "in_progress",
                    "call_id": piece.call.id, "name": piece.call.name, "arguments": ""}
            yield from self._start(item)
            self._call_items[piece.index] = self._open
        elif piece.kind == "arguments":
            item = self.output[self._call_items.get(piece.index, self._open)]
            item["arguments"] += piece.text
            yield self._event("response.function_call_arguments.delta", item_id=item["id"],
                              output_index=self.output.index(item), delta=piece.text)

    def _text(self, kind: str, text: str) -> Iterator[dict]:
        """More text into the open item of that kind (a message, or reasoning), or a new one."""
        item_type, part_type = TEXT_KINDS[kind]
        if self._open is None or self.output[self._open]["type"] != item_type:
            yield from self._close()
            item = {"id": new_id("msg_" if kind == "text" else "rs_"), "type": item_type, "status": "in_progress",
                    **({"role": "assistant"} if kind == "text" else {"summary": []}), "content": []}
            yield from self._start(item)
            part = _part(part_type, "")
            item["content"].append(part)
            yield self._event("response.content_part.added", item_id=item["id"], output_index=self._open,
                              content_index=0, part=dict(part))
        item = self.output[self._open]
        item["content"][0]["text"] += text
        yield self._event(f"response.{part_type}.delta", item_id=item["id"], output_index=self._open,
                          content_index=0, delta=text, **({"logprobs": []} if kind == "text" else {}))

    def _start(self, item: dict) -> Iterator[dict]:
        self.output.append(item)
        self._open = len(self.output) - 1
        yield self._event("response.output_item.added", output_index=self._open, item=dict(item))

    def _close(self) -> Iterator[dict]:
        if self._open is None:
            return
        index, item = self._open, self.output[self._open]
        self._open, item["status"] = None, "completed"
        if item["type"] == "function_call":
            yield self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                              name=item["name"], arguments=item["arguments"])
        else:
            part = item["content"][0]
            fields = {"item_id": item["id"], "output_index": index, "content_index": 0}
            extra = {"logprobs": []} if part["type"] == "output_text" else {}
            yield self._event(f"response.{part['type']}.done", **fields, text=part["text"], **extra)
            yield self._event("response.content_part.done", **fields, part=dict(part))
        yield self._event("response.output_item.done", output_index=index, item=dict(item))

    def error_event(self, err: ProxyError) -> dict:
        """The `error` event that ends a stream the backend broke off."""
        return {"type": "error", "code": err.code, "message": err.message, "param": None,
                "sequence_number": self.next_sequence()}

    def next_sequence(self) -> int:
        """The next event's sequence_number."""
        self._sequence += 1
        return self._sequence - 1

    def _event(self, kind: str, **fields) -> dict:
        return {"type": kind, "sequence_number": self.next_sequence(), **fields}


def _part(part_type: str, text: str) -> dict:
    if part_type == "output_text":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": part_type, "text": text}
