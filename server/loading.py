"""Loading a GGUF model with llama-cpp-python under the backend's settings."""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from core.gguf_check import GGUFHeader, InvalidGGUF, scan_gguf_header

from .discovery import ModelFile
from .errors import ModelLoadFailed
from .runner import ModelRunner
from .settings import DEFAULT_CTX_CAP, Settings

log = logging.getLogger(__name__)

# Chat formats for GGUF files without a chat template (base models): llama-cpp-python would fall
# back to Llama 2's; like llama.cpp's server we use ChatML, or the model family's own format.
_FORMAT_BY_ARCH = {"gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma"}
_DEFAULT_CHAT_FORMAT = "chatml"


@dataclass(eq=False)
class LoadedModel:
    """A model in memory. Use it only while holding `lock`, and only through `runner`, the thread
    that runs its llama.cpp calls (server.runner says why); once `closed`, load it again."""

    model: ModelFile
    llama: Any  # llama_cpp.Llama; Any so that tests can hand in a small fake
    n_ctx: int
    runner: ModelRunner
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def close(self) -> None:
        """Free the model's memory and stop its thread; the caller holds `lock`."""
        self.closed = True
        close = getattr(self.llama, "close", None)
        try:
            if close is not None:
                self.runner.call(close)
        finally:
            self.runner.shutdown()


def load_model(settings: Settings, model: ModelFile) -> LoadedModel:
    """Load `model` with llama.cpp under the backend's settings.

    Raises:
        ModelLoadFailed: the file is not a GGUF model llama.cpp can load.
    """
    from .interruptible import InterruptibleLlama  # llama.cpp in the worker only, never in gunicorn's master

    kwargs = llama_kwargs(settings, check_header(model))
    started = time.monotonic()
    runner = ModelRunner(model.id)
    try:
        llama = runner.call(partial(InterruptibleLlama, model_path=model.path, **kwargs))
    except (ValueError, RuntimeError, OSError) as err:
        runner.shutdown()
        log.warning("loading %s failed: %r", model.path, err)
        raise ModelLoadFailed(
            f"{model.files[0]} could not be loaded: not a GGUF model llama.cpp can read"
        ) from err
    log.info(
        "loaded model %s from %s: n_ctx=%d threads=%d gpu_layers=%d in %.1fs", model.id, model.files[0],
        kwargs["n_ctx"], kwargs["n_threads"], kwargs["n_gpu_layers"], time.monotonic() - started,
    )
    return LoadedModel(model=model, llama=llama, n_ctx=kwargs["n_ctx"], runner=runner)


def llama_kwargs(settings: Settings, header: GGUFHeader) -> dict[str, Any]:
    """Keyword arguments for `llama_cpp.Llama` (the benchmark uses them too, for a fair comparison)."""
    threads = settings.n_threads or available_cores()
    kwargs: dict[str, Any] = {
        "n_ctx": settings.n_ctx or min(header.context_length or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP),
        "n_batch": settings.n_batch,
        "n_threads": threads,
        "n_threads_batch": threads,
        "n_gpu_layers": gpu_layers(settings),
        "flash_attn": settings.flash_attn,
        "swa_full": settings.swa_full,
        "verbose": False,
    }
    if "tokenizer.chat_template" not in header.metadata:
        kwargs["chat_format"] = _FORMAT_BY_ARCH.get(header.architecture or "", _DEFAULT_CHAT_FORMAT)
    return kwargs


def forget_pruned_prefix(llama: Any) -> None:
    """Make the next generation evaluate its whole prompt if the KV cache lost its oldest tokens.

    With SWA_FULL off, sliding-window layers keep only the last window of tokens; llama-cpp-python
    would still reuse an older common prefix of the next prompt, and generate from a cache missing
    part of it (garbage, silently). llama.cpp's own server checks the same position.
    """
    import llama_cpp

    if not llama.n_tokens:
        return
    memory = llama_cpp.llama_get_memory(llama.ctx)
    if memory is not None and llama_cpp.llama_memory_seq_pos_min(memory, 0) > 0:
        llama.reset()  # n_tokens = 0: the next eval clears the cache and starts from the first token


def check_header(model: ModelFile) -> GGUFHeader:
    """The checked GGUF header of the model's (first) file.

    A fast scan (~50 ms for 250 MB) that refuses what llama.cpp's loader would, with a reason.

    Raises:
        ModelLoadFailed: the file is not a well-formed GGUF file, or it cannot be read.
    """
    try:
        return scan_gguf_header(model.path)
    except InvalidGGUF as err:
        log.warning("%s is not a valid GGUF file: %s", model.path, err)  # the detail: for the log only
        raise ModelLoadFailed(f"{model.files[0]} could not be loaded: {err.client_message}") from err
    except OSError as err:
        raise ModelLoadFailed(f"{model.files[0]} could not be read") from err


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which cgroup cpusets also narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def gpu_layers(settings: Settings) -> int:
    if settings.n_gpu_layers is not None:
        return settings.n_gpu_layers
    return -1 if gpu_offload_supported() else 0


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())
