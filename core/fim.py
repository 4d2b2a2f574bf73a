"""Fill-in-the-middle: whether a GGUF model has the tokens llama.cpp builds a FIM prompt with.

llama.cpp (src/llama-vocab.cpp) takes the prefix, suffix and middle tokens from the GGUF's metadata
(`tokenizer.ggml.fim_pre_token_id`, ... or the older `prefix_token_id`, ...) and, for files converted without
them, finds them in the vocabulary by their text (Qwen2.5-Coder's `<|fim_prefix|>`, CodeLlama's `▁<PRE>`,
StarCoder's `<fim_prefix>`, DeepSeek-Coder's `<｜fim▁begin｜>`, ...). A model has FIM when all three are found.

The backend asks the loaded vocabulary itself (server/chat/fim.py); this answers the same from the file, without
loading it, for what the proxy shows: Ollama's `insert` capability in `/api/show` calls `has_fim_tokens`.
"""
from __future__ import annotations

import functools
import os
import struct

from core.gguf_check import GGUFHeader, scan_gguf_header

# role -> the metadata keys that name its token id (llama.cpp's LLM_KV_TOKENIZER_FIM_*_ID, then the deprecated ones).
FIM_KEYS: dict[str, tuple[str, ...]] = {
    "pre": ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"),
    "suf": ("tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"),
    "mid": ("tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"),
}
# role -> the token texts llama.cpp's vocabulary loader recognises when the metadata names none.
FIM_TEXTS: dict[str, tuple[str, ...]] = {
    "pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>"),
    "suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>"),
    "mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>"),
}
_LENGTH = struct.Struct("<Q")  # GGUF strings are a little-endian u64 length, then the bytes


def has_fim_tokens(path: str | os.PathLike[str], header: GGUFHeader | None = None) -> bool:
    """Whether llama.cpp finds FIM prefix, suffix and middle tokens in the GGUF at `path` (`header`: its scan,
    when the caller has it).

    Raises:
        InvalidGGUF: the file is not a well-formed GGUF file (only when no `header` is given).
        OSError: it cannot be read.
    """
    header = header or scan_gguf_header(path)
    if fim_ids_in_metadata(header.metadata) is not None:
        return True
    stat = os.stat(path)
    return _fim_texts_in_header(os.fspath(path), header.data_offset, stat.st_size, stat.st_mtime_ns)


def fim_ids_in_metadata(metadata: dict[str, object]) -> dict[str, int] | None:
    """The prefix, suffix and middle token ids the metadata names, or None unless it names all three."""
    ids = {}
    for role, keys in FIM_KEYS.items():
        value = next((metadata[key] for key in keys if key in metadata), None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return None
        ids[role] = value
    return ids


@functools.lru_cache(maxsize=256)  # by size and modification time: a replaced file is read again
def _fim_texts_in_header(path: str, header_bytes: int, size: int, mtime_ns: int) -> bool:
    with open(path, "rb") as f:  # the header only: metadata (the vocabulary) and the tensor table
        head = f.read(header_bytes)
    # A token's text is stored as its length (eight bytes, mostly zeros) and its bytes: that sequence cannot
    # occur inside another string, which is UTF-8 text without NUL bytes.
    return all(any(_LENGTH.pack(len(text.encode())) + text.encode() in head for text in texts)
               for texts in FIM_TEXTS.values())
