"""The bytes under the GGUF header scan: a bounded forward reader, and the error it and the scan raise."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from gguf.constants import GGUFValueType
from core.errors import ErrorCode

CHUNK_BYTES = 1 << 20
_FORMATS = {"UINT8": "B", "INT8": "b", "UINT16": "H", "INT16": "h", "UINT32": "I", "INT32": "i",
            "FLOAT32": "f", "BOOL": "?", "UINT64": "Q", "INT64": "q", "FLOAT64": "d"}
SCALARS = {int(GGUFValueType[name]): struct.Struct("<" + fmt) for name, fmt in _FORMATS.items()}
U32, U64 = SCALARS[GGUFValueType.UINT32], SCALARS[GGUFValueType.UINT64]

MALFORMED = "its GGUF header is malformed"
NOT_GGUF = "not a GGUF file: it does not start with the GGUF magic bytes"
TRUNCATED = "its tensor data is cut short: the file is smaller than its header says (an interrupted copy?)"
UNSUPPORTED = "an unsupported GGUF version (llama.cpp loads little-endian GGUF v2 and v3)"
NAME_SHOWN_CHARS = 64  # names read from the file are cut to this in messages


class InvalidGGUF(Exception):
    """The file is not a GGUF file llama.cpp could load.

    `str(err)` says exactly what is wrong, for the log: names read from the file appear escaped and cut
    short (quoted). `client_message` is one of a few fixed descriptions, never quoting the file, for
    answers to clients.
    """

    code = ErrorCode.INVALID_GGUF

    def __init__(self, detail: str, client_message: str = MALFORMED):
        super().__init__(detail)
        self.client_message = client_message

    @classmethod
    def fixed(cls, message: str) -> "InvalidGGUF":
        """An error whose detail is fixed text (no bytes of the file), fit for clients as it is."""
        return cls(message, message)


def quoted(name: str) -> str:
    """A name read from the file, for a log line: escaped (repr: controls, bidi overrides) and cut short."""
    return repr(name if len(name) <= NAME_SHOWN_CHARS else name[:NAME_SHOWN_CHARS] + "...")


@dataclass(frozen=True)
class SkippedValue:
    """A metadata value not read: an array (`ARRAY[INT32]`, count items) or a long `STRING` (count bytes)."""

    value_type: str
    count: int


class Reader:
    """Forward reader over a file through a large buffer, every read checked against the file size."""

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.size = f, size
        self.buf, self.base, self.pos = b"", 0, 0

    def ensure(self, n: int, what: str) -> int:
        """Buffer the n bytes at pos, n bounded by the file size; return their offset in buf."""
        start = self.pos - self.base
        if start + n <= len(self.buf):
            return start
        if n > self.size - self.pos:
            raise InvalidGGUF(f"{what} at offset {self.pos} runs past the end of the file, {self.size} bytes")
        self.f.seek(self.pos)
        self.buf, self.base = self.f.read(max(n, CHUNK_BYTES)), self.pos
        if len(self.buf) < n:
            raise InvalidGGUF(f"{what} at offset {self.pos}: the file shrank while it was scanned")
        return 0

    def unpack(self, st: struct.Struct, what: str) -> Any:
        """Read one value of struct `st` at pos and advance."""
        start = self.ensure(st.size, what)
        self.pos += st.size
        return st.unpack_from(self.buf, start)[0]

    def skip(self, n: int, what: str) -> None:
        """Advance n bytes without reading them."""
        if n > self.size - self.pos:
            raise InvalidGGUF(
                f"{what} of {n} bytes at offset {self.pos} runs past the end of the file ({self.size} bytes)")
        self.pos += n

    def string(self, what: str, max_bytes: int) -> str | SkippedValue:
        """Read a length-prefixed string; one longer than max_bytes is skipped."""
        n = self.unpack(U64, f"length of {what}")
        if n > max_bytes:
            self.skip(n, what)
            return SkippedValue("STRING", n)
        start = self.ensure(n, what)
        self.pos += n
        return self.buf[start:start + n].decode("utf-8", "replace")

    def skip_strings(self, count: int, what: str) -> None:
        """Skip count length-prefixed strings, walking their offsets through the buffer."""
        unpack, left = U64.unpack_from, count
        while left:
            off, buf, done = self.ensure(8, what), self.buf, 0
            try:  # the scan's hot loop (262k tokens in Gemma): one unpack per string, nothing more
                for done in range(left):
                    off += 8 + unpack(buf, off)[0]
                else:
                    done = left
            except (struct.error, OverflowError):  # the next length lies past the buffer: refill there
                pass
            self.pos, left = self.base + off, left - done
            if self.pos > self.size:
                raise InvalidGGUF(f"a string in {what} runs past the end of the file ({self.size} bytes)")
