"""A slot's output text: token bytes decoded to UTF-8 without splitting a character across events, and
`stop` strings held back until they can no longer match (docs/api.md, Serving)."""
from __future__ import annotations

import codecs
import ctypes
from typing import Any, Sequence


class TextOut:
    """Turns a request's token pieces into the text it may send now.

    `push(piece)` answers the text that is safe to send: complete UTF-8 characters only, minus any tail that
    could still grow into a stop string. Once a stop string appears, `stopped` is set, the text before it is
    the last text, and everything after it is dropped.
    """

    def __init__(self, stop: Sequence[str] = ()):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._held = ""
        self.stopped = False
        self.stop_word = ""  # the stop string that matched, once `stopped`

    def push(self, piece: bytes) -> str:
        """The text that `piece` makes ready to send ("" while a character or a stop match is pending)."""
        if self.stopped:
            return ""
        self._held += self._decoder.decode(piece)
        if not self._stop:
            text, self._held = self._held, ""
            return text
        first, word = min(((i, s) for s, i in ((s, self._held.find(s)) for s in self._stop) if i >= 0),
                          default=(-1, ""))
        if first >= 0:
            self.stopped, self.stop_word = True, word
            text, self._held = self._held[:first], ""
            return text
        keep = _longest_stop_prefix_tail(self._held, self._stop)
        text, self._held = self._held[: len(self._held) - keep], self._held[len(self._held) - keep:]
        return text

    def flush(self) -> str:
        """What is still held when generation ends for another reason (end of sequence, length)."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return text


def _longest_stop_prefix_tail(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest


def token_piece(ll: Any, vocab: Any, token: int, special: bool = False) -> bytes:
    """The bytes of `token`; special tokens render as nothing, as llama-cpp-python renders them, unless `special`
    (llama-server's /detokenize and /tokenize pieces show them)."""
    buffer = ctypes.create_string_buffer(64)
    n = ll.llama_token_to_piece(vocab, token, buffer, 64, 0, special)
    if n < 0:
        buffer = ctypes.create_string_buffer(-n)
        n = ll.llama_token_to_piece(vocab, token, buffer, -n, 0, special)
    return buffer.raw[:n]
