"""The backend's streamed chat as Anthropic's Messages answer: the events of a stream (`message_start`,
`content_block_start/delta/stop`, `message_delta`, `message_stop`) and the whole message they add up to."""
from __future__ import annotations

from typing import Iterator

from proxy.anthropic.request import MessagesRequest
from proxy.anthropic.stops import StopScanner
from proxy.backend.chat import ChatAnswer, Piece, chat_pieces, new_id
from proxy.backend.upstream import Upstream

STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use"}
EMPTY_BLOCKS = {"text": {"type": "text", "text": ""}, "thinking": {"type": "thinking", "thinking": "", "signature": ""}}
DELTAS = {"text": ("text_delta", "text"), "thinking": ("thinking_delta", "thinking"),
          "tool_use": ("input_json_delta", "partial_json")}


class MessageTranslator:
    """One answer: `events(upstream)` yields Anthropic's stream events as the backend's pieces come, and
    `message()` is the whole message once they have all come. Stop sequences are found here rather than by the
    backend, so the answer can say which one ended it."""

    def __init__(self, asked: MessagesRequest):
        self.asked = asked
        self.id = new_id("msg_")
        self.answer = ChatAnswer()
        self.blocks: list[dict] = []  # the content blocks, as the whole message gives them
        self._open: int | None = None  # the index of the block being streamed
        self._call_blocks: dict[int, int] = {}  # tool call index -> its block's index
        self._scanner = StopScanner(asked.stop_sequences)
        self._pieces = 0

    def events(self, upstream: Upstream) -> Iterator[dict]:
        """Raises: ProxyError when the backend fails (before or part way)."""
        yield {"type": "message_start", "message": {**self._shell(), "content": [], "stop_reason": None,
                                                    "stop_sequence": None}}
        try:
            for piece in chat_pieces(upstream, self.answer):
                self._pieces += 1
                yield from self._on(piece)
                if self._scanner.matched:
                    break  # closing the backend's stream stops its generation
        finally:
            upstream.close()
        yield from self._text(self._scanner.flush())
        yield from self._close()
        yield {"type": "message_delta", "delta": {"stop_reason": self.stop_reason(),
                                                  "stop_sequence": self._scanner.matched}, "usage": self._usage()}
        yield {"type": "message_stop"}

    def message(self) -> dict:
        """The whole message; call once events() has run to its end."""
        return {**self._shell(), "content": self.blocks, "stop_reason": self.stop_reason(),
                "stop_sequence": self._scanner.matched, "usage": self._usage()}

    def stop_reason(self) -> str:
        if self._scanner.matched:
            return "stop_sequence"
        if self.answer.cut_short():
            return "max_tokens"
        return "tool_use" if self.answer.calls else STOP_REASONS.get(self.answer.finish_reason or "stop", "end_turn")

    def _shell(self) -> dict:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.asked.model,
                "usage": self._usage()}

    def _usage(self) -> dict:
        return {"input_tokens": self.answer.prompt_tokens,
                "output_tokens": self.answer.completion_tokens or self._pieces}

    def _on(self, piece: Piece) -> Iterator[dict]:
        if piece.kind == "reasoning":
            yield from self._add("thinking", piece.text)
        elif piece.kind == "text":
            yield from self._text(self._scanner.feed(piece.text))
        elif piece.kind == "call" and piece.call is not None:
            yield from self._close()
            block = {"type": "tool_use", "id": new_id("toolu_"), "name": piece.call.name, "input": {}}
            yield from self._start(block)
            self._call_blocks[piece.index] = self._open
        elif piece.kind == "arguments":
            index = self._call_blocks.get(piece.index, self._open)
            self.blocks[index]["input"] = self.answer.calls[piece.index].parsed_arguments()
            yield _delta(index, "tool_use", piece.text)

    def _text(self, text: str) -> Iterator[dict]:
        if text:
            yield from self._add("text", text)

    def _add(self, kind: str, text: str) -> Iterator[dict]:
        """More text or thinking: into the open block of that kind, or a new one."""
        if self._open is None or self.blocks[self._open]["type"] != kind:
            yield from self._close()
            yield from self._start(dict(EMPTY_BLOCKS[kind]))
        self.blocks[self._open][kind] += text
        yield _delta(self._open, kind, text)

    def _start(self, block: dict) -> Iterator[dict]:
        self.blocks.append(block)
        self._open = len(self.blocks) - 1
        yield {"type": "content_block_start", "index": self._open, "content_block": {**block}}

    def _close(self) -> Iterator[dict]:
        if self._open is not None:
            yield {"type": "content_block_stop", "index": self._open}
            self._open = None


def _delta(index: int, kind: str, text: str) -> dict:
    delta_type, field = DELTAS[kind]
    return {"type": "content_block_delta", "index": index, "delta": {"type": delta_type, field: text}}
