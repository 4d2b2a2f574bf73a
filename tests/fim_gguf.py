"""A copy of a GGUF file whose metadata names fill-in-the-middle tokens: the tests' FIM-capable model.

Gemma 3 270M has no FIM tokens; its `<unused0..2>` (ids 6, 7, 8) serve as prefix, suffix and middle, named by
`tokenizer.ggml.fim_pre_token_id` and friends as llama.cpp's converter writes them for Qwen2.5-Coder. The new
entries go after the existing metadata; the tensor table follows as it was and the tensor data is re-aligned,
so the copy loads exactly as the original does.
"""
from __future__ import annotations

import os
import shutil
import struct

from gguf.constants import GGUFValueType

from core.gguf_check import _read_metadata, _read_preamble, _read_tensor_table, scan_gguf_header
from core.gguf_reader import Reader

GEMMA_FIM_IDS = {"pre": 6, "suf": 7, "mid": 8}  # <unused0>, <unused1>, <unused2>
COPY_BYTES = 1 << 24


def write_fim_copy(source: str | os.PathLike, target: str | os.PathLike, ids: dict[str, int] = GEMMA_FIM_IDS) -> None:
    """Copy `source` to `target` with `tokenizer.ggml.fim_{role}_token_id` = id for each of `ids`."""
    header = scan_gguf_header(source)
    with open(source, "rb") as f:
        reader = Reader(f, os.fstat(f.fileno()).st_size)
        _read_preamble(reader)
        _read_metadata(reader, header.kv_count)
        kv_end = reader.pos
        _read_tensor_table(reader, header.tensor_count, header.alignment, False)
        f.seek(24)
        metadata = f.read(kv_end - 24)
        tensor_table = f.read(reader.pos - kv_end)
        added = b"".join(_kv_u32(f"tokenizer.ggml.fim_{role}_token_id", token) for role, token in ids.items())
        head = struct.pack("<IIQQ", 0x46554747, header.version, header.tensor_count, header.kv_count + len(ids))
        head += metadata + added + tensor_table
        head += b"\0" * (-len(head) % header.alignment)
        with open(target, "wb") as out:
            out.write(head)
            f.seek(header.data_offset)
            shutil.copyfileobj(f, out, COPY_BYTES)


def _kv_u32(key: str, value: int) -> bytes:
    name = key.encode()
    return struct.pack("<Q", len(name)) + name + struct.pack("<II", GGUFValueType.UINT32, value)
