"""Backend settings: one frozen value built from the environment in one place."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Mapping

from proxy.settings import env_bool, env_int

# The cap on the default context: a model's own training context can be 128k tokens, whose KV
# cache would not fit a small pod. N_CTX overrides it either way.
DEFAULT_CTX_CAP = 4096


@dataclass(frozen=True)
class Settings:
    """Everything the backend is configured with. None means "work it out at load time"."""

    models_dir: str = "/models"
    host: str = "0.0.0.0"
    port: int = 8081
    # N_CTX: context length; None = the model's own training context, capped at DEFAULT_CTX_CAP.
    n_ctx: int | None = None
    # N_GPU_LAYERS: None = -1 (all) when llama.cpp was built with GPU offload, else 0.
    n_gpu_layers: int | None = None
    # N_THREADS: threads for generation and prompt processing; None = every core we may run on.
    n_threads: int | None = None
    # MAX_LOADED_MODELS: models kept in memory; the least recently used is unloaded first.
    max_loaded_models: int = 1
    # Not in the contract. N_BATCH: prompt tokens evaluated per llama_decode call.
    n_batch: int = 512
    # FLASH_ATTN: llama.cpp's fused attention; faster decoding on CPU as well (see the benchmark).
    flash_attn: bool = True
    # SWA_FULL: a full-size KV cache for sliding-window layers (Gemma 2/3, ...). Off, as in
    # llama.cpp's server: less memory and faster decoding; a cached prompt prefix is then reused
    # only while the window still holds it (server.loading.forget_pruned_prefix).
    swa_full: bool = False
    # HTTP_THREADS: gunicorn gthread threads. Requests for a busy model wait on its lock in one of
    # them; enough are left for /health and listings while generations queue.
    http_threads: int = 32
    # Seconds gunicorn waits for running generations after SIGTERM.
    graceful_timeout_s: int = 30
    max_body_bytes: int = 8 * 1024 * 1024
    log_level: str = "info"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from environment variables (API.md, Settings).

        Raises:
            ValueError: a variable that should be a number or a boolean is not.
        """
        env = os.environ if env is None else env
        known = {
            "models_dir": env.get("MODELS_DIR") or None,
            "host": env.get("HOST") or None,
            "port": env_int(env, "BACKEND_PORT"),
            "n_ctx": env_int(env, "N_CTX"),
            "n_gpu_layers": env_int(env, "N_GPU_LAYERS"),
            "n_threads": env_int(env, "N_THREADS"),
            "max_loaded_models": env_int(env, "MAX_LOADED_MODELS"),
            "n_batch": env_int(env, "N_BATCH"),
            "flash_attn": env_bool(env, "FLASH_ATTN"),
            "swa_full": env_bool(env, "SWA_FULL"),
            "http_threads": env_int(env, "HTTP_THREADS"),
            "graceful_timeout_s": env_int(env, "GRACEFUL_TIMEOUT_S"),
            "log_level": env.get("LOG_LEVEL") or None,
        }
        return cls(**{key: value for key, value in known.items() if value is not None})

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)
