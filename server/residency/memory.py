"""What a model takes in memory, from its GGUF header, and what the backend may use (MAX_MODEL_MEMORY).

The estimate is llama.cpp's three buffers: the weights (the tensor data of its files), the KV cache for
`N_CTX` x `PARALLEL` tokens (f16 keys and values of every layer), and a compute buffer for one batch. It is an
upper bound for models with sliding-window layers (their cache holds only the window).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess

from core.gguf_check import GGUFHeader

log = logging.getLogger(__name__)
GIB = 1 << 30
MARGIN_BYTES = GIB  # left to the process itself, the proxy and the page cache
_KV_BYTES = 2  # f16


def estimate_bytes(header: GGUFHeader, weights_bytes: int, n_ctx_total: int, n_batch: int, n_outputs: int) -> int:
    """Weights plus KV cache for `n_ctx_total` tokens plus one batch's compute buffer and the logits of
    `n_outputs` tokens (one a slot)."""
    md, arch = header.metadata, header.architecture or ""
    n_layer = _int(md.get(f"{arch}.block_count"), 0)
    n_embd = _int(md.get(f"{arch}.embedding_length"), 0)
    n_head = max(1, _int(md.get(f"{arch}.attention.head_count"), 1))
    n_head_kv = _int(md.get(f"{arch}.attention.head_count_kv"), n_head)
    key_len = _int(md.get(f"{arch}.attention.key_length"), n_embd // n_head)
    value_len = _int(md.get(f"{arch}.attention.value_length"), key_len)
    kv = n_layer * n_ctx_total * n_head_kv * (key_len + value_len) * _KV_BYTES
    tokens = md.get("tokenizer.ggml.tokens")
    n_vocab = _int(getattr(tokens, "count", None), 32000)
    logits = 3 * n_outputs * n_vocab * 4  # the output matmul, the logits and their probabilities (f32)
    compute = max(64 << 20, n_batch * n_embd * 4 * 24) + logits
    return weights_bytes + kv + compute


def default_budget(gpu_offload: bool) -> int:
    """MAX_MODEL_MEMORY's default: the GPU's free memory with offload, else the container's memory limit
    (cgroup memory.max) or the machine's memory, less MARGIN_BYTES."""
    if gpu_offload:
        free = _gpu_free_bytes()
        if free is not None:
            return max(0, free - MARGIN_BYTES // 2)
    limit = _cgroup_memory_limit()
    total = _machine_memory()
    usable = min(limit, total) if limit else total
    return max(GIB // 2, usable - MARGIN_BYTES)


def _cgroup_memory_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                value = f.read().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < (1 << 60):
            return int(value)
    return None


def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * GIB


def _gpu_free_bytes() -> int | None:
    """Free memory of the first GPU, from nvidia-smi where there is one."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return None
    try:
        out = subprocess.run([tool, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return int(out.split()[0]) << 20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        log.warning("could not read the GPU's free memory; MAX_MODEL_MEMORY falls back to system memory")
        return None


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def format_bytes(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / (1 << 20):.0f} MiB"
