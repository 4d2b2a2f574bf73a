"""Loading a GGUF model with llama.cpp under the backend's settings: the weights, one context whose KV cache
holds PARALLEL sequences of N_CTX tokens, and the batching engine that runs it."""
from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from core.gguf_check import GGUFHeader, InvalidGGUF, scan_gguf_header

from .cpus import default_threads
from .discovery import ModelFile
from ..engine.loop import Engine
from ..errors import ModelLoadFailed
from .memory import estimate_bytes
from ..chat.prompts import ChatFormat, chat_format_for
from ..settings import DEFAULT_CTX_CAP, Settings
from ..engine.stats import ServingStats
from ..engine.prompt_cache import PromptCache
from .cache_key import cache_key

log = logging.getLogger(__name__)
MIN_ASKED_CTX = 256  # a smaller num_ctx leaves no room for a chat template and an answer


class ModelEngine(Protocol):
    """What residency and the health routes need of a loaded model's engine: server.engine.loop.Engine, or a
    test's small fake."""

    n_slots: int

    def idle(self) -> bool:
        """No request running or waiting, no task queued: the model may be unloaded."""

    def alive(self) -> bool:
        """Whether its loop still runs (False: load the model again)."""

    def occupancy(self) -> tuple[int, int]:
        """Slots busy and requests waiting for one."""

    def close(self, free: Callable[[], None] | None = None) -> None:
        """Stop it (running requests end with an error), then run `free` on its thread."""


@dataclass(eq=False)
class LoadedModel:
    """A model in memory and what residency knows of it. Its llama.cpp calls run on `engine`'s thread."""

    model: ModelFile
    engine: ModelEngine  # server.engine.loop.Engine
    n_ctx: int  # the context one request may use
    size_bytes: int = 0  # the memory estimate it was admitted with
    gpu_layers: int = 0
    llama: Any = None  # server.llama_model.LlamaModelHandle: tokenizer, chat format, embeddings
    users: int = 0  # requests holding it (never unloaded while > 0)
    keep_alive_s: float | None = 300.0  # None: forever
    pinned: bool = False  # loaded with keep_alive -1 by POST /api/load (keep_loaded): until unloaded
    last_used: float = field(default_factory=time.monotonic)
    loaded_at: float = field(default_factory=time.time)
    closed: bool = False

    def expires_at(self) -> float | None:
        """Wall-clock time it is unloaded if still idle then; None for never."""
        if self.keep_alive_s is None:
            return None
        return time.time() + max(0.0, self.last_used + self.keep_alive_s - time.monotonic())

    def close(self) -> None:
        """Stop the engine (running requests end with an error) and free the model's memory."""
        self.closed = True
        self.engine.close(None if self.llama is None else self.llama.free)


class LlamaModelHandle:
    """The llama.cpp side of a loaded model: weights, vocab, the generating context, chat format and (made on
    first use) an embedding context. Created and freed on the engine's thread."""

    def __init__(self, settings: Settings, model: ModelFile, header: GGUFHeader, n_ctx: int):
        import llama_cpp as ll
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's own log: errors only (it prints every graph node at debug)
        params = ll.llama_model_default_params()
        layers = gpu_layers(settings)
        params.n_gpu_layers = 0x7FFFFFFF if layers == -1 else layers
        self._ll = ll
        self.settings = settings
        self.model = LlamaModel(path_model=model.path, params=params, verbose=False)
        self.vocab = ll.llama_model_get_vocab(self.model.model)
        self.n_ctx = n_ctx
        self.n_slots = max(1, settings.parallel)
        self.threads = settings.n_threads or default_threads()
        self.ctx = self._new_context(n_ctx * self.n_slots, self.n_slots, settings.n_batch, embeddings=False)
        self.n_swa = ll.llama_model_n_swa(self.model.model)
        self.chat: ChatFormat = chat_format_for(self.model, header)
        self.embedding_ctx: Any = None
        self.lock = threading.Lock()

    def _new_context(self, n_ctx: int, n_seq: int, n_batch: int, embeddings: bool) -> Any:
        ll = self._ll
        params = ll.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        if not embeddings:  # a step needs logits for one token a slot at most: not for all N_BATCH tokens
            params.n_outputs_max = n_seq  # (a 262k vocabulary x 512 outputs was 512 MiB of compute buffer)
        params.n_threads = params.n_threads_batch = self.threads
        params.flash_attn_type = (ll.LLAMA_FLASH_ATTN_TYPE_ENABLED if self.settings.flash_attn
                                  else ll.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.swa_full = self.settings.swa_full
        params.kv_unified = embeddings
        if embeddings:
            params.embeddings = True
            if ll.llama_model_has_encoder(self.model.model) is False and \
                    params.pooling_type in (ll.LLAMA_POOLING_TYPE_UNSPECIFIED, ll.LLAMA_POOLING_TYPE_NONE):
                params.pooling_type = ll.LLAMA_POOLING_TYPE_MEAN
        ctx = ll.llama_init_from_model(self.model.model, params)
        if not ctx:
            raise ModelLoadFailed("llama.cpp could not create a context for the model (out of memory?)")
        return ctx

    def tokenize(self, text: str, add_bos: bool = True, special: bool = True) -> list[int]:
        """Tokens of `text` (thread-safe: the vocabulary is read only)."""
        return self.model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def free(self) -> None:
        """Free the contexts and the weights (on the engine's thread)."""
        if self.embedding_ctx is not None:
            self._ll.llama_free(self.embedding_ctx)
            self.embedding_ctx = None
        if self.ctx is not None:
            self._ll.llama_free(self.ctx)
            self.ctx = None
        self.model.close()


def load_model(settings: Settings, model: ModelFile, stats: ServingStats | None = None,
               n_ctx: int | None = None, prompt_cache: PromptCache | None = None) -> LoadedModel:
    """Load `model` with llama.cpp under the backend's settings and start its engine, with a context of `n_ctx`
    tokens a request (None: context_length's).

    Raises:
        ModelLoadFailed: the file is not a GGUF model llama.cpp can load.
    """
    header = check_header(model)
    n_ctx = n_ctx or context_length(settings, header)
    started = time.monotonic()
    try:  # the weights load on the engine's own thread, as every later llama.cpp call of the model
        engine = Engine(model.id, lambda: LlamaModelHandle(settings, model, header, n_ctx),
                        n_slots=max(1, settings.parallel), n_ctx_slot=n_ctx, n_batch=settings.n_batch,
                        max_queue=settings.max_queue, stats=stats, prompt_cache=prompt_cache,
                        cache_key=cache_key(settings, model, n_ctx) if prompt_cache is not None else "")
    except (ValueError, RuntimeError, OSError) as err:
        log.warning("loading %s failed: %r", model.path, err)
        raise ModelLoadFailed(
            f"{model.files[0]} could not be loaded: not a GGUF model llama.cpp can read") from err
    handle = engine.handle
    log.info("loaded model %s from %s: n_ctx=%d x %d slots, threads=%d gpu_layers=%d in %.1fs", model.id,
             model.files[0], n_ctx, handle.n_slots, handle.threads, gpu_layers(settings),
             time.monotonic() - started)
    return LoadedModel(model=model, engine=engine, n_ctx=n_ctx, size_bytes=estimate(settings, model, header, n_ctx),
                       gpu_layers=gpu_layers(settings), llama=handle)


def context_length(settings: Settings, header: GGUFHeader) -> int:
    """N_CTX, or the model's own training context capped at DEFAULT_CTX_CAP."""
    return settings.n_ctx or min(header.context_length or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP)


def asked_context(settings: Settings, model: ModelFile, asked: int, budget_bytes: int) -> int:
    """The context a request's `n_ctx` (Ollama's `num_ctx`) loads `model` with: at most the model's trained
    context, at least MIN_ASKED_CTX, and lowered so that the model's estimate fits `budget_bytes`
    (MAX_MODEL_MEMORY), but never below the context it would get unasked.

    Raises:
        ModelLoadFailed: the file's header cannot be read.
    """
    header = _cached_header(model)  # asked on every request that sends num_ctx: read once a file version
    trained = header.context_length or asked
    n_ctx = max(MIN_ASKED_CTX, min(asked, trained))
    default = context_length(settings, header)
    if n_ctx <= default:
        return n_ctx
    fixed = estimate(settings, model, header, 0)  # the estimate is linear in the context
    per_token = max(1, (estimate(settings, model, header, default) - fixed) // default)
    fitting = (budget_bytes - fixed) // per_token
    return max(default, min(n_ctx, fitting))


@functools.lru_cache(maxsize=64)
def _cached_header(model: ModelFile) -> GGUFHeader:
    """check_header, once a ModelFile (whose signature changes with its file's size and mtime)."""
    return check_header(model)


def estimate(settings: Settings, model: ModelFile, header: GGUFHeader | None = None,
             n_ctx: int | None = None) -> int:
    """The model's memory estimate under these settings (server.residency.memory), with `n_ctx` tokens a slot
    (None: context_length's)."""
    header = header or check_header(model)
    n_ctx = context_length(settings, header) if n_ctx is None else n_ctx
    return estimate_bytes(header, model.size_bytes, n_ctx * max(1, settings.parallel), settings.n_batch,
                          max(1, settings.parallel))


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


def gpu_layers(settings: Settings) -> int:
    if settings.n_gpu_layers is not None:
        return settings.n_gpu_layers
    return -1 if gpu_offload_supported() else 0


def gpu_offload_supported() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())
