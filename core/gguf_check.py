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

from gguf.constants import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION
from gguf.constants import GGMLQuantizationType, GGUFValueType, Keys, LlamaFileType

from core.gguf_reader import (
    NOT_GGUF, SCALARS, TRUNCATED, U32, U64, UNSUPPORTED, InvalidGGUF, Reader, SkippedValue, quoted,
)

SUPPORTED_VERSIONS = (2, GGUF_VERSION)  # v1 had 32-bit counts; v2 and v3 share one layout
MAX_TENSORS = 1_000_000  # real models have a few thousand at most
MAX_KV = 1_000_000
MAX_STRING_ARRAY_ITEMS = 1 << 24  # vocabularies are ~1e5-1e6; bounds the per-item walk
MAX_KEY_BYTES = 65_536
MAX_STRING_VALUE_BYTES = 1 << 20  # longer string values are skipped, not read
GGML_MAX_NAME = 64  # ggml refuses tensor names of this many bytes or more
GGML_MAX_DIMS = 4
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8  # name length, n_dims, type, offset

_DIMS = [struct.Struct(f"<{n}Q") for n in range(GGML_MAX_DIMS + 1)]


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the header describes it; `offset` is relative to GGUFHeader.data_offset."""

    name: str
    ggml_type: int
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    offset: int
    nbytes: int

    @property
    def n_elements(self) -> int:
        return math.prod(self.shape)


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
    parameter_count: int  # elements of every tensor in this file (a split part holds only its share)
    architecture: str | None
    metadata: dict[str, object]  # scalars as values; arrays and long strings as SkippedValue
    tensors: tuple[TensorInfo, ...] = field(default=(), repr=False)  # only with list_tensors

    @property
    def context_length(self) -> int | None:
        """The model's trained context length (`<arch>.context_length`), if the header has it."""
        value = self.metadata.get(f"{self.architecture}.context_length")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def quantization(self) -> str | None:
        """The file type as llama.cpp names it (`Q4_K_M`, `F16`) from `general.file_type`, if known."""
        value = self.metadata.get(Keys.General.FILE_TYPE)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        try:  # llama.cpp ORs in GUESSED when it inferred the type from the tensors
            name = LlamaFileType(value & ~LlamaFileType.GUESSED).name
        except ValueError:  # a type newer than this gguf package
            return None
        return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def scan_gguf_header(path: str | os.PathLike[str], *, list_tensors: bool = False) -> GGUFHeader:
    """Read and check a GGUF file's header and tensor table; `list_tensors` also returns the table.

    Raises:
        InvalidGGUF: the file is not a well-formed little-endian GGUF v2/v3 file, or its tensor
            data is cut short.
        OSError: the file cannot be opened or read.
    """
    with open(path, "rb") as f:
        reader = Reader(f, os.fstat(f.fileno()).st_size)
        version, tensor_count, kv_count = _read_preamble(reader)
        metadata = _read_metadata(reader, kv_count)
        alignment = metadata.get(Keys.General.ALIGNMENT, GGUF_DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise InvalidGGUF(f"general.alignment {alignment} is not a power of two")
        tensors_end, parameter_count, tensors = _read_tensor_table(reader, tensor_count, alignment, list_tensors)
    size, header_end = reader.size, reader.pos
    data_offset = _pad(header_end, alignment)
    data_end = data_offset + tensors_end if tensor_count else header_end
    if data_end > size:
        raise InvalidGGUF(
            f"truncated tensor data: the header describes {data_end} bytes, the file has {size}"
            f" ({data_end - size} missing)", TRUNCATED)
    architecture = metadata.get(Keys.General.ARCHITECTURE)
    return GGUFHeader(
        version=version, tensor_count=tensor_count, kv_count=kv_count, alignment=alignment,
        data_offset=data_offset, data_end=data_end, file_size=size, parameter_count=parameter_count,
        architecture=architecture if isinstance(architecture, str) else None,
        metadata=metadata, tensors=tuple(tensors))


def _read_preamble(r: Reader) -> tuple[int, int, int]:
    """Check magic and version, and read the tensor and key-value counts.

    Raises:
        InvalidGGUF: not GGUF (an HTML page, an LFS pointer, ...), an unsupported version, absurd counts.
    """
    _check_magic(r)
    version = r.unpack(U32, "GGUF version")
    if version not in SUPPORTED_VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        if swapped in SUPPORTED_VERSIONS:
            raise InvalidGGUF(f"big-endian GGUF (version {swapped}), which llama.cpp here cannot load", UNSUPPORTED)
        if version == 1:
            raise InvalidGGUF.fixed("GGUF version 1 is obsolete and not supported; the model needs re-converting")
        raise InvalidGGUF(f"unsupported GGUF version {version} (supported: 2, 3)", UNSUPPORTED)
    tensor_count = r.unpack(U64, "tensor count")
    kv_count = r.unpack(U64, "metadata count")
    if tensor_count > MAX_TENSORS or tensor_count * _MIN_TENSOR_INFO_BYTES > r.size:
        raise InvalidGGUF(f"absurd tensor count {tensor_count} for a file of {r.size} bytes")
    if kv_count > MAX_KV or kv_count * _MIN_KV_BYTES > r.size:
        raise InvalidGGUF(f"absurd metadata count {kv_count} for a file of {r.size} bytes")
    return version, tensor_count, kv_count


def _check_magic(r: Reader) -> None:
    """Raises: InvalidGGUF naming what the file looks like when it does not start with GGUF."""
    if r.size == 0:
        raise InvalidGGUF.fixed("the file is empty")
    n = min(r.size, 1024)
    start = r.ensure(n, "file start")
    head = r.buf[start:start + n]
    if r.size >= 4 and U32.unpack_from(head)[0] == GGUF_MAGIC:
        r.pos = 4
        return
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"version https://git-lfs"):
        raise InvalidGGUF.fixed("not a GGUF file: looks like a Git LFS pointer file, not the model itself")
    if text.startswith((b"<!doctype html", b"<html")) or b"<html" in text:
        raise InvalidGGUF.fixed("not a GGUF file: looks like an HTML page (an error or login page?)")
    if text.startswith((b"{", b"[")):
        raise InvalidGGUF.fixed("not a GGUF file: looks like a JSON document (an error answer?)")
    if r.size < 24:
        raise InvalidGGUF(f"not a GGUF file: only {r.size} bytes, shorter than a GGUF header", NOT_GGUF)
    raise InvalidGGUF(f"not a GGUF file: bad magic {head[:4]!r}, expected b'GGUF'", NOT_GGUF)


def _read_metadata(r: Reader, kv_count: int) -> dict[str, object]:
    """Read kv_count key-value pairs: scalars and short strings as values, the rest as SkippedValue.

    Raises:
        InvalidGGUF: a duplicate or over-long key, an unknown value type, a value past the end.
    """
    metadata: dict[str, object] = {}
    for index in range(kv_count):
        key = r.string(f"key of metadata entry {index}", MAX_KEY_BYTES)
        if isinstance(key, SkippedValue):
            raise InvalidGGUF(f"metadata entry {index} has an absurd key length of {key.count} bytes")
        shown = quoted(key)  # read from the file: escaped and cut short in messages
        if key in metadata:
            raise InvalidGGUF(f"duplicate metadata key {shown}")
        value_type = r.unpack(U32, f"value type of {shown}")
        if key == Keys.General.ALIGNMENT and value_type != GGUFValueType.UINT32:
            raise InvalidGGUF(f"{shown} must be a UINT32, not value type {value_type}")
        scalar = SCALARS.get(value_type)
        if scalar is not None:
            metadata[key] = r.unpack(scalar, f"value of {shown}")
        elif value_type == GGUFValueType.STRING:
            metadata[key] = r.string(f"value of {shown}", MAX_STRING_VALUE_BYTES)
        elif value_type == GGUFValueType.ARRAY:
            metadata[key] = _skip_array(r, key)
        else:
            raise InvalidGGUF(f"metadata key {shown} has unknown value type {value_type}")
    return metadata


def _skip_array(r: Reader, key: str) -> SkippedValue:
    """Skip an array's items by their lengths, without decoding them.

    Raises:
        InvalidGGUF: an unknown or nested item type, or items past the end of the file.
    """
    shown = quoted(key)
    item_type = r.unpack(U32, f"item type of array {shown}")
    count = r.unpack(U64, f"length of array {shown}")
    scalar = SCALARS.get(item_type)
    if scalar is not None:
        r.skip(count * scalar.size, f"array {shown}")
    elif item_type == GGUFValueType.STRING:
        if count > MAX_STRING_ARRAY_ITEMS or count * 8 > r.size - r.pos:
            raise InvalidGGUF(f"array {shown} claims {count} strings, past the end of the file")
        r.skip_strings(count, f"array {shown}")
    elif item_type == GGUFValueType.ARRAY:
        raise InvalidGGUF(f"array {shown} holds arrays, which llama.cpp does not support")
    else:
        raise InvalidGGUF(f"array {shown} has unknown item type {item_type}")
    return SkippedValue(f"ARRAY[{GGUFValueType(item_type).name}]", count)


def _read_tensor_table(r: Reader, count: int, alignment: int, keep: bool) -> tuple[int, int, list[TensorInfo]]:
    """Check every tensor's info; return where the last tensor's data ends, relative to the data start,
    and the elements of all tensors (the parameter count).

    Raises:
        InvalidGGUF: a duplicate name, an offset out of range or out of sequence.
    """
    names: set[str] = set()
    tensors: list[TensorInfo] = []
    expected = end = elements = 0
    for index in range(count):
        info = _read_tensor_info(r, index)
        if info.name in names:
            raise InvalidGGUF(f"duplicate tensor name {quoted(info.name)}")
        if info.offset != expected:  # ggml lays tensors out in order, each padded to the alignment
            why = "past the end of the file" if info.offset > r.size else "misaligned, overlapping or reordered"
            raise InvalidGGUF(f"tensor {quoted(info.name)} has data offset {info.offset}, not {expected}: {why}")
        names.add(info.name)
        expected, end = _pad(info.offset + info.nbytes, alignment), info.offset + info.nbytes
        elements += info.n_elements
        if keep:
            tensors.append(info)
    return end, elements, tensors


def _read_tensor_info(r: Reader, index: int) -> TensorInfo:
    """Read one tensor info: name, dims, type, offset.

    Raises:
        InvalidGGUF: an over-long name, absurd dims, an unknown type, rows not whole blocks.
    """
    name = r.string(f"name of tensor {index}", GGML_MAX_NAME - 1)
    if isinstance(name, SkippedValue):
        raise InvalidGGUF(f"tensor {index} has a name of {name.count} bytes, over ggml's {GGML_MAX_NAME - 1}")
    shown = quoted(name)  # read from the file: escaped and cut short in messages
    n_dims = r.unpack(U32, f"dimension count of tensor {shown}")
    if n_dims > GGML_MAX_DIMS:
        raise InvalidGGUF(f"tensor {shown} has {n_dims} dimensions (at most {GGML_MAX_DIMS})")
    start = r.ensure(8 * n_dims, f"dimensions of tensor {shown}")
    shape = _DIMS[n_dims].unpack_from(r.buf, start)
    r.pos += 8 * n_dims
    ggml_type = r.unpack(U32, f"type of tensor {shown}")
    offset = r.unpack(U64, f"data offset of tensor {shown}")
    if ggml_type not in GGML_QUANT_SIZES:
        raise InvalidGGUF(f"tensor {shown} has unknown type {ggml_type}")
    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    nbytes = math.prod(shape) // block_size * type_size
    if nbytes >= 1 << 63 or any(dim >= 1 << 63 for dim in shape):  # ggml's int64 overflow check
        raise InvalidGGUF(f"tensor {shown} has absurd dimensions {list(shape)} ({nbytes} bytes)")
    if shape and shape[0] % block_size:
        kind = GGMLQuantizationType(ggml_type).name
        raise InvalidGGUF(f"tensor {shown}: rows of {shape[0]} are not whole {kind} blocks of {block_size}")
    return TensorInfo(name=name, ggml_type=ggml_type, shape=shape, offset=offset, nbytes=nbytes)


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment
