"""Fast GGUF header scan: magic, version, metadata, tensor table, and tensor data end vs file size.

`gguf` supplies only the format's constants: its GGUFReader decodes every vocabulary entry in
Python (~20 s on a 253 MB model). This reads the header in large chunks, seeks over arrays, and
refuses what llama.cpp's loader (ggml/src/gguf.cpp) would, so a bad file fails here, not at load.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from gguf.constants import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION
from gguf.constants import GGMLQuantizationType, GGUFValueType, Keys

SUPPORTED_VERSIONS = (2, GGUF_VERSION)  # v1 had 32-bit counts; v2 and v3 share one layout
MAX_TENSORS = 1_000_000  # real models have a few thousand at most
MAX_KV = 1_000_000
MAX_STRING_ARRAY_ITEMS = 1 << 24  # vocabularies are ~1e5-1e6; bounds the per-item walk
MAX_KEY_BYTES = 65_536
MAX_STRING_VALUE_BYTES = 1 << 20  # longer string values are skipped, not read
GGML_MAX_NAME = 64  # ggml refuses tensor names of this many bytes or more
GGML_MAX_DIMS = 4
CHUNK_BYTES = 1 << 20
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset

_FORMATS = {"UINT8": "B", "INT8": "b", "UINT16": "H", "INT16": "h", "UINT32": "I", "INT32": "i",
            "FLOAT32": "f", "BOOL": "?", "UINT64": "Q", "INT64": "q", "FLOAT64": "d"}
_SCALARS = {int(GGUFValueType[name]): struct.Struct("<" + fmt) for name, fmt in _FORMATS.items()}
_U32, _U64 = _SCALARS[GGUFValueType.UINT32], _SCALARS[GGUFValueType.UINT64]
_DIMS = [struct.Struct(f"<{n}Q") for n in range(GGML_MAX_DIMS + 1)]


class InvalidGGUF(Exception):
    """The file is not a GGUF file llama.cpp could load; the message says what is wrong."""

    code = "invalid_gguf"


@dataclass(frozen=True)
class SkippedValue:
    """A metadata value not read: an array (`ARRAY[INT32]`, count items) or a long `STRING` (count bytes)."""

    value_type: str
    count: int


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it; `offset` is relative to GGUFHeader.data_offset."""

    name: str
    ggml_type: int
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    offset: int
    nbytes: int


@dataclass(frozen=True)
class GGUFHeader:
    """What the header of a GGUF file says, after every check passed."""

    version: int
    tensor_count: int
    kv_count: int
    alignment: int
    data_offset: int  # start of tensor data: header end aligned up to `alignment`
    data_end: int  # end of the last tensor's data (the header end when there are no tensors)
    file_size: int
    architecture: str | None
    metadata: dict[str, object]  # scalars as values; arrays and long strings as SkippedValue
    tensors: tuple[TensorInfo, ...] = field(default=(), repr=False)  # only with list_tensors

    @property
    def context_length(self) -> int | None:
        """The model's trained context length (`<arch>.context_length`), if the header has it."""
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def scan_gguf_header(path: str | os.PathLike[str], *, list_tensors: bool = False) -> GGUFHeader:
    """Read and check a GGUF file's header and tensor table; `list_tensors` also returns the table.

    Raises:
        InvalidGGUF: the file is not a well-formed little-endian GGUF v2/v3 file, or its tensor
            data is cut short.
        OSError: the file cannot be opened or read.
    """
    with open(path, "rb") as f:
        reader = _Reader(f, os.fstat(f.fileno()).st_size)
        version, tensor_count, kv_count = _read_preamble(reader)
        metadata = _read_metadata(reader, kv_count)
        alignment = metadata.get(Keys.General.ALIGNMENT, GGUF_DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise InvalidGGUF(f"general.alignment {alignment} is not a power of two")
        tensors_end, tensors = _read_tensor_table(reader, tensor_count, alignment, list_tensors)
    size, header_end = reader.size, reader.pos
    data_offset = _pad(header_end, alignment)
    data_end = data_offset + tensors_end if tensor_count else header_end
    if data_end > size:
        raise InvalidGGUF(
            f"truncated tensor data: the header describes {data_end} bytes, the file has {size}"
            f" ({data_end - size} missing)")
    architecture = metadata.get(Keys.General.ARCHITECTURE)
    return GGUFHeader(
        version=version, tensor_count=tensor_count, kv_count=kv_count, alignment=alignment,
        data_offset=data_offset, data_end=data_end, file_size=size,
        architecture=architecture if isinstance(architecture, str) else None,
        metadata=metadata, tensors=tuple(tensors))


class _Reader:
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
        n = self.unpack(_U64, f"length of {what}")
        if n > max_bytes:
            self.skip(n, what)
            return SkippedValue("STRING", n)
        start = self.ensure(n, what)
        self.pos += n
        return self.buf[start:start + n].decode("utf-8", "replace")

    def skip_strings(self, count: int, what: str) -> None:
        """Skip count length-prefixed strings, walking their offsets through the buffer."""
        unpack, left = _U64.unpack_from, count
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


def _read_preamble(r: _Reader) -> tuple[int, int, int]:
    """Check magic and version, and read the tensor and key-value counts.

    Raises:
        InvalidGGUF: not GGUF (an HTML page, an LFS pointer, ...), an unsupported version, absurd counts.
    """
    _check_magic(r)
    version = r.unpack(_U32, "GGUF version")
    if version not in SUPPORTED_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in SUPPORTED_VERSIONS:
            raise InvalidGGUF(f"big-endian GGUF (version {swapped}), which llama.cpp here cannot load")
        if version == 1:
            raise InvalidGGUF("GGUF version 1 is obsolete and not supported; the model needs re-converting")
        raise InvalidGGUF(f"unsupported GGUF version {version} (supported: 2, 3)")
    tensor_count = r.unpack(_U64, "tensor count")
    kv_count = r.unpack(_U64, "metadata count")
    if tensor_count > MAX_TENSORS or tensor_count * _MIN_TENSOR_INFO_BYTES > r.size:
        raise InvalidGGUF(f"absurd tensor count {tensor_count} for a file of {r.size} bytes")
    if kv_count > MAX_KV or kv_count * _MIN_KV_BYTES > r.size:
        raise InvalidGGUF(f"absurd metadata count {kv_count} for a file of {r.size} bytes")
    return version, tensor_count, kv_count


def _check_magic(r: _Reader) -> None:
    """Raises: InvalidGGUF naming what the file looks like when it does not start with GGUF."""
    if r.size == 0:
        raise InvalidGGUF("the file is empty")
    n = min(r.size, 1024)
    start = r.ensure(n, "file start")
    head = r.buf[start:start + n]
    if r.size >= 4 and _U32.unpack_from(head)[0] == GGUF_MAGIC:
        r.pos = 4
        return
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"version https://git-lfs"):
        raise InvalidGGUF("not a GGUF file: looks like a Git LFS pointer file, not the model itself")
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text:
        raise InvalidGGUF("not a GGUF file: looks like an HTML page (an error or login page?)")
    if text.startswith((b"{", b"[")):
        raise InvalidGGUF("not a GGUF file: looks like a JSON document (an error answer?)")
    if r.size < 24:
        raise InvalidGGUF(f"not a GGUF file: only {r.size} bytes, shorter than a GGUF header")
    raise InvalidGGUF(f"not a GGUF file: bad magic {head[:4]!r}, expected b'GGUF'")


def _read_metadata(r: _Reader, kv_count: int) -> dict[str, object]:
    """Read kv_count key-value pairs: scalars and short strings as values, the rest as SkippedValue.

    Raises:
        InvalidGGUF: a duplicate or over-long key, an unknown value type, a value past the end.
    """
    metadata: dict[str, object] = {}
    for index in range(kv_count):
        key = r.string(f"key of metadata entry {index}", MAX_KEY_BYTES)
        if isinstance(key, SkippedValue):
            raise InvalidGGUF(f"metadata entry {index} has an absurd key length of {key.count} bytes")
        if key in metadata:
            raise InvalidGGUF(f"duplicate metadata key '{key}'")
        value_type = r.unpack(_U32, f"value type of '{key}'")
        if key == Keys.General.ALIGNMENT and value_type != GGUFValueType.UINT32:
            raise InvalidGGUF(f"'{key}' must be a UINT32, not value type {value_type}")
        scalar = _SCALARS.get(value_type)
        if scalar is not None:
            metadata[key] = r.unpack(scalar, f"value of '{key}'")
        elif value_type == GGUFValueType.STRING:
            metadata[key] = r.string(f"value of '{key}'", MAX_STRING_VALUE_BYTES)
        elif value_type == GGUFValueType.ARRAY:
            metadata[key] = _skip_array(r, key)
        else:
            raise InvalidGGUF(f"metadata key '{key}' has unknown value type {value_type}")
    return metadata


def _skip_array(r: _Reader, key: str) -> SkippedValue:
    """Skip an array's items by their lengths, without decoding them.

    Raises:
        InvalidGGUF: an unknown or nested item type, or items past the end of the file.
    """
    item_type = r.unpack(_U32, f"item type of array '{key}'")
    count = r.unpack(_U64, f"length of array '{key}'")
    scalar = _SCALARS.get(item_type)
    if scalar is not None:
        r.skip(count * scalar.size, f"array '{key}'")
    elif item_type == GGUFValueType.STRING:
        if count > MAX_STRING_ARRAY_ITEMS or count * 8 > r.size - r.pos:
            raise InvalidGGUF(f"array '{key}' claims {count} strings, past the end of the file")
        r.skip_strings(count, f"array '{key}'")
    elif item_type == GGUFValueType.ARRAY:
        raise InvalidGGUF(f"array '{key}' holds arrays, which llama.cpp does not support")
    else:
        raise InvalidGGUF(f"array '{key}' has unknown item type {item_type}")
    return SkippedValue(f"ARRAY[{GGUFValueType(item_type).name}]", count)


def _read_tensor_table(r: _Reader, count: int, alignment: int, keep: bool) -> tuple[int, list[TensorInfo]]:
    """Check every tensor's info; return where the last tensor's data ends, relative to the data start.

    Raises:
        InvalidGGUF: a duplicate name, an offset out of range or out of sequence.
    """
    names: set[str] = set()
    tensors: list[TensorInfo] = []
    expected = end = 0
    for index in range(count):
        info = _read_tensor_info(r, index)
        if info.name in names:
            raise InvalidGGUF(f"duplicate tensor name '{info.name}'")
        if info.offset != expected:  # ggml lays tensors out in order, each padded to the alignment
            why = "past the end of the file" if info.offset > r.size else "misaligned, overlapping or reordered"
            raise InvalidGGUF(f"tensor '{info.name}' has data offset {info.offset}, not {expected}: {why}")
        names.add(info.name)
        expected, end = _pad(info.offset + info.nbytes, alignment), info.offset + info.nbytes
        if keep:
            tensors.append(info)
    return end, tensors


def _read_tensor_info(r: _Reader, index: int) -> TensorInfo:
    """Read one tensor info: name, dims, type, offset.

    Raises:
        InvalidGGUF: an over-long name, absurd dims, an unknown type, rows not whole blocks.
    """
    name = r.string(f"name of tensor {index}", GGML_MAX_NAME - 1)
    if isinstance(name, SkippedValue):
        raise InvalidGGUF(f"tensor {index} has a name of {name.count} bytes, over ggml's {GGML_MAX_NAME - 1}")
    n_dims = r.unpack(_U32, f"dimension count of tensor '{name}'")
    if n_dims > GGML_MAX_DIMS:
        raise InvalidGGUF(f"tensor '{name}' has {n_dims} dimensions (at most {GGML_MAX_DIMS})")
    start = r.ensure(8 * n_dims, f"dimensions of tensor '{name}'")
    shape = _DIMS[n_dims].unpack_from(r.buf, start)
    r.pos += 8 * n_dims
    ggml_type = r.unpack(_U32, f"type of tensor '{name}'")
    offset = r.unpack(_U64, f"data offset of tensor '{name}'")
    if ggml_type not in GGML_QUANT_SIZES:
        raise InvalidGGUF(f"tensor '{name}' has unknown type {ggml_type}")
    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    nbytes = math.prod(shape) // block_size * type_size
    if nbytes >= 1 << 63 or any(dim >= 1 << 63 for dim in shape):  # ggml's int64 overflow check
        raise InvalidGGUF(f"tensor '{name}' has absurd dimensions {list(shape)} ({nbytes} bytes)")
    if shape and shape[0] % block_size:
        kind = GGMLQuantizationType(ggml_type).name
        raise InvalidGGUF(f"tensor '{name}': rows of {shape[0]} are not whole {kind} blocks of {block_size}")
    return TensorInfo(name=name, ggml_type=ggml_type, shape=shape, offset=offset, nbytes=nbytes)


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment
