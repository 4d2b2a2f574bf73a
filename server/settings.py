"""Backend settings: one frozen value built from the environment in one place, each field described."""
from __future__ import annotations

from dataclasses import dataclass

from core.env import EnvSettings, setting
from core.units import parse_keep_alive, parse_size

# The cap on the default context: a model's own training context can be 128k tokens, whose KV
# cache would not fit a small pod. N_CTX overrides it either way.
DEFAULT_CTX_CAP = 4096


@dataclass(frozen=True)
class Settings(EnvSettings):
    """Everything the backend is configured with. None means "work it out at load time".

    N_CTX, N_GPU_LAYERS, N_THREADS and MAX_LOADED_MODELS are in docs/api.md's settings table; the
    others are the backend's own (server/__init__.py lists them for users).
    """

    models_dir: str = setting("/models", "MODELS_DIR", "where models live; shared by proxy and backend")
    # The loopback: only the proxy beside it may call the backend (its load, unload and generate endpoints have
    # no key and no forwarding cap). A deployment that puts the two in separate containers sets it on purpose.
    host: str = setting("127.0.0.1", "BACKEND_HOST", "address the backend listens on; 127.0.0.1: only the "
                        "proxy in the same container or pod reaches it")
    port: int = setting(8081, "BACKEND_PORT", "port the backend listens on")
    n_ctx: int | None = setting(
        None, "N_CTX", f"context length; None: the model's own training context, capped at {DEFAULT_CTX_CAP}")
    n_gpu_layers: int | None = setting(
        None, "N_GPU_LAYERS", "layers offloaded; None: -1 (all) when llama.cpp was built with GPU offload, else 0")
    n_threads: int | None = setting(
        None, "N_THREADS", "threads for generation and prompt processing; None: llama.cpp's rule, the physical "
        "cores this process may use (affinity mask, cgroup CPU quota), at least one; fewer on a host shared with busy processes")
    max_loaded_models: int = setting(
        1, "MAX_LOADED_MODELS", "models kept in memory; the least recently used is unloaded first")
    n_batch: int = setting(512, "N_BATCH", "tokens one llama_decode step evaluates at most: every running "
                           "request's next token plus a chunk of a prompt being read")
    parallel: int = setting(4, "PARALLEL", "requests one loaded model decodes at once, in one batch; the KV "
                            "cache holds PARALLEL x N_CTX tokens")
    max_queue: int = setting(64, "MAX_QUEUE", "requests waiting for a slot of a model; past it 503 server_busy")
    keep_alive: str = setting("5m", "KEEP_ALIVE", "how long a model stays loaded unused: a duration (30s, 5m, "
                              "1h), -1 forever, 0 unload when its request ends")
    max_model_memory: str | None = setting(
        None, "MAX_MODEL_MEMORY", "memory loaded models may take (bytes, or e.g. 8GiB); None: the container's "
        "memory limit or the machine's memory less 1 GiB, the GPU's free memory with offload")
    flash_attn: bool = setting(
        True, "FLASH_ATTN", "llama.cpp's fused attention; faster decoding on CPU as well (see the benchmark)")
    # Off, as in llama.cpp's server: less memory and faster decoding; a cached prompt prefix is then reused
    # only while the window still holds it (server.engine.loop.Engine._can_reuse).
    swa_full: bool = setting(
        False, "SWA_FULL", "a full-size KV cache for sliding-window layers (Gemma 2/3, ...)")
    prompt_cache_bytes: str = setting(
        "1GiB", "PROMPT_CACHE_BYTES", "host memory for KV states of prompt prefixes evicted from slots, within "
        "what loaded models leave of MAX_MODEL_MEMORY (bytes, or e.g. 512MiB; 0 turns the cache off)")
    prompt_cache_disk_bytes: str = setting(
        "4GiB", "PROMPT_CACHE_DISK_BYTES", "the prompt cache's tier on MODELS_DIR/.prompt-cache; 0 turns it off")
    http_threads: int = setting(
        32, "HTTP_THREADS", "gunicorn threads at least; raised to PARALLEL + MAX_QUEUE + 8 so that every request "
        "a model may hold or queue has one, with some left for /health and listings")
    graceful_timeout_s: int = setting(
        30, "GRACEFUL_TIMEOUT_S", "seconds gunicorn waits for running generations after SIGTERM")
    max_body_bytes: int = setting(8 * 1024 * 1024, None, "largest request body; more is 413 body_too_large")
    log_level: str = setting("info", "LOG_LEVEL", "log level of the backend and its gunicorn")
    tool_formats: str = setting(
        "", "TOOL_FORMATS", "tool-call formats by model, for a template the backend reads wrong: comma-separated "
        "GLOB=FORMAT (hermes, llama3, mistral, functiongemma, generic) matched on the model id, e.g. '*Hermes*=hermes'; unset: "
        "chosen from the model's chat template")

    def __post_init__(self) -> None:
        parse_keep_alive(self.keep_alive)  # a bad KEEP_ALIVE stops the start, with its message
        if self.max_model_memory is not None and parse_size(self.max_model_memory) <= 0:
            raise ValueError(f"MAX_MODEL_MEMORY={self.max_model_memory} leaves no memory for any model: give a "
                             "size such as 8GiB, or leave it unset for the default")
        parse_size(self.prompt_cache_bytes), parse_size(self.prompt_cache_disk_bytes)
        if self.parallel < 1 or self.max_queue < 0:
            raise ValueError("PARALLEL must be at least 1 and MAX_QUEUE at least 0")
        if self.n_batch < self.parallel:  # every running request puts its next token in each batch
            raise ValueError(f"N_BATCH ({self.n_batch}) must be at least PARALLEL ({self.parallel})")

    @property
    def keep_alive_s(self) -> float | None:
        """KEEP_ALIVE in seconds; None for forever."""
        return parse_keep_alive(self.keep_alive)

    @property
    def prompt_cache_memory_bytes(self) -> int:
        return parse_size(self.prompt_cache_bytes)

    @property
    def prompt_cache_disk_max_bytes(self) -> int:
        return parse_size(self.prompt_cache_disk_bytes)

    @property
    def max_model_memory_bytes(self) -> int | None:
        return None if self.max_model_memory is None else parse_size(self.max_model_memory)
