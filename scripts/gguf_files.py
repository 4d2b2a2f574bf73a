"""Synthetic GGUF files for benchmarks and tests: valid ones of any size (in constant memory), an unloadable one, bad ones.

Headers are written by gguf.GGUFWriter; tensor data is streamed after it (zeros as a sparse
extension, or seeded random bytes), so a 1 GiB file costs no memory. The last tensor is not padded:
every file written here ends exactly where its last tensor's data ends (data_end == file size).
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType, GGUFWriter

CHUNK_BYTES = 1 << 20
UNLOADABLE_ARCH = "madeuparch"


@dataclass(frozen=True)
class TensorSpec:
    """A tensor to declare: shape in numpy order (the last dimension is the row length)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLQuantizationType = GGMLQuantizationType.F32

    @property
    def nbytes(self) -> int:
        block_size, type_size = GGML_QUANT_SIZES[self.ggml_type]
        return math.prod(self.shape) // block_size * type_size


def write_gguf(
    path: str | os.PathLike[str], *, tensor_bytes: int = 4096, n_tensors: int = 2,
    architecture: str = "llama", metadata: Mapping[str, Any] | None = None,
    tensors: Sequence[TensorSpec] | None = None, alignment: int | None = None,
    random_seed: int | None = None,
) -> Path:
    """Write a valid GGUF v3 file with about tensor_bytes of tensor data over n_tensors I8 tensors.

    `tensors` replaces the I8 tensors with explicit ones; `metadata` values are typed from Python
    (bool, int as UINT32/INT32 or 64-bit when large, float as FLOAT32, str, list as an array) or as
    `(GGUFValueType, value)`. Data is zeros, or random bytes from `random_seed`.
    """
    specs = list(tensors) if tensors is not None else _byte_tensors(tensor_bytes, n_tensors, alignment or 32)
    meta = {"general.name": Path(path).stem, f"{architecture}.context_length": 2048, **(metadata or {})}
    return _write(Path(path), architecture, meta, specs, alignment, random_seed)


def random_gguf(path: str | os.PathLike[str], size_bytes: int, seed: int) -> Path:
    """Write a valid GGUF file of exactly size_bytes whose content (header and data) follows from seed."""
    path = Path(path)
    meta = {"general.name": f"random-{seed}", "general.seed": (GGUFValueType.UINT64, seed)}
    empty = TensorSpec("random.weight", (0,), GGMLQuantizationType.I8)
    data_bytes = size_bytes - _write(path, "llama", meta, [empty], None, None).stat().st_size
    if data_bytes < 0:
        raise ValueError(f"size_bytes {size_bytes} is less than the header alone, {size_bytes - data_bytes}")
    spec = TensorSpec("random.weight", (data_bytes,), GGMLQuantizationType.I8)
    return _write(path, "llama", meta, [spec], None, seed)


def write_unloadable_gguf(path: str | os.PathLike[str]) -> Path:
    """Write a GGUF file that passes every byte check but llama.cpp cannot load (unknown architecture)."""
    tokens = ["<unk>", "<s>", "</s>", *(f"tok{i}" for i in range(29))]
    meta = {
        f"{UNLOADABLE_ARCH}.block_count": 1, f"{UNLOADABLE_ARCH}.embedding_length": 64,
        f"{UNLOADABLE_ARCH}.attention.head_count": 1,
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": [0.0] * len(tokens), "tokenizer.ggml.token_type": [1] * len(tokens),
        "tokenizer.ggml.bos_token_id": (GGUFValueType.UINT32, 1),
        "tokenizer.ggml.eos_token_id": (GGUFValueType.UINT32, 2),
    }
    specs = [TensorSpec("token_embd.weight", (len(tokens), 64)), TensorSpec("output_norm.weight", (64,))]
    return write_gguf(path, architecture=UNLOADABLE_ARCH, metadata=meta, tensors=specs)


def html_page_bytes() -> bytes:
    """An HTML error page, as a proxy or a login wall might answer instead of the file."""
    return (b"<!DOCTYPE html>\n<html class=\"\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\" />\n"
            b"<title>Hugging Face - 404</title>\n</head>\n<body><h1>404</h1><p>Sorry, we can't find the page"
            b" you are looking for.</p></body>\n</html>\n")


def lfs_pointer_bytes(sha256: str, size: int) -> bytes:
    """A Git LFS pointer file, what a raw git fetch of an LFS-tracked model gives instead of the model."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def truncate_file(path: str | os.PathLike[str], size_bytes: int) -> None:
    """Cut the file to size_bytes (a negative value cuts that many bytes off the end)."""
    if size_bytes < 0:
        size_bytes += os.path.getsize(path)
    os.truncate(path, size_bytes)


def overwrite_bytes(path: str | os.PathLike[str], offset: int, data: bytes) -> None:
    """Overwrite the bytes at offset with data, in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _byte_tensors(tensor_bytes: int, n_tensors: int, alignment: int) -> list[TensorSpec]:
    """Split tensor_bytes over n_tensors I8 tensors, all but the last a multiple of the alignment."""
    each = tensor_bytes // n_tensors // alignment * alignment
    sizes = [each] * (n_tensors - 1) + [tensor_bytes - each * (n_tensors - 1)]
    return [TensorSpec(f"blk.{i}.weight", (size,), GGMLQuantizationType.I8) for i, size in enumerate(sizes)]


def _write(path: Path, architecture: str, metadata: Mapping[str, Any], specs: Sequence[TensorSpec],
           alignment: int | None, random_seed: int | None) -> Path:
    """Write the header with GGUFWriter, then stream each tensor's data, the last one unpadded."""
    writer = GGUFWriter(path, architecture)
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    for key, value in metadata.items():
        _add_metadata(writer, key, value)
    for spec in specs:  # a non-uint8 dtype with raw_dtype keeps the shape in elements
        writer.add_tensor_info(spec.name, spec.shape, np.dtype(np.float32), spec.nbytes,
                               raw_dtype=spec.ggml_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    out = writer.fout[0]
    writer.write_padding(out, out.tell())
    rng = np.random.default_rng(random_seed) if random_seed is not None else None
    for index, spec in enumerate(specs):
        _write_data(out, spec.nbytes, rng)
        if index < len(specs) - 1:
            _write_data(out, GGUFWriter.ggml_pad(spec.nbytes, writer.data_alignment) - spec.nbytes, None)
    writer.close()
    return path


def _write_data(out: BinaryIO, nbytes: int, rng: np.random.Generator | None) -> None:
    """Append nbytes of random bytes, or of zeros by extending the file (sparse, instant)."""
    if rng is None:
        out.flush()
        out.seek(nbytes, os.SEEK_CUR)
        out.truncate()
        return
    while nbytes > 0:
        chunk = min(nbytes, CHUNK_BYTES)
        out.write(rng.bytes(chunk))
        nbytes -= chunk


def _add_metadata(writer: GGUFWriter, key: str, value: Any) -> None:
    """Add one key, its GGUF type chosen from the Python value or given as (GGUFValueType, value)."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], GGUFValueType):
        value_type, value = value
    elif isinstance(value, bool):
        value_type = GGUFValueType.BOOL
    elif isinstance(value, int):  # as real files have them: counts and ids are UINT32
        if value >= 0:
            value_type = GGUFValueType.UINT32 if value < 1 << 32 else GGUFValueType.UINT64
        else:
            value_type = GGUFValueType.INT32 if value >= -(1 << 31) else GGUFValueType.INT64
    elif isinstance(value, (list, tuple)):
        value_type, value = GGUFValueType.ARRAY, list(value)
    else:
        value_type = GGUFValueType.get_type(value)
    writer.add_key_value(key, value, value_type)
