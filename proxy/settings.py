"""Proxy settings: one frozen value built from the environment in one place."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Mapping


def _split_list(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Everything the proxy is configured with. Tests build it directly with small timeouts."""

    models_dir: str = "/models"
    backend_url: str = "http://127.0.0.1:8081"
    hf_endpoint: str | None = None  # None: huggingface_hub's own (HF_ENDPOINT or the public Hub)
    hf_token: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    allowed_repos: tuple[str, ...] = ()  # empty: every repo may be pulled
    pull_concurrency: int = 1
    pull_queue_max: int = 8
    pull_connections: int = 8
    pull_stall_timeout_s: float = 30.0
    pull_max_retries: int = 6
    preload_models: tuple[str, ...] = ()
    # Not in the contract; tests and benchmarks shrink them.
    pull_chunk_bytes: int = 16 * 1024 * 1024  # ranged part size; smaller parts keep the hash close behind
    pull_backoff_base_s: float = 1.0
    pull_backoff_max_s: float = 30.0
    hub_timeout_s: float = 20.0
    progress_interval_s: float = 0.5
    staging_sweep_interval_s: float = 3600.0  # the contract's "hourly" removal of day-old dead staging
    backend_timeout_s: float = 300.0
    backend_connect_timeout_s: float = 5.0
    # Forwarded requests at once; more are answered 503 at once. Each holds a gunicorn thread while the
    # backend answers, so gunicorn.conf.py adds this many threads to those kept for everything else; it
    # stays below the backend's own threads (HTTP_THREADS, 32) so that its /health is never queued.
    forward_max_in_flight: int = 24
    max_body_bytes: int = 1024 * 1024
    backend_exit_file: str | None = None  # written by scripts/start.sh and docker/start.sh when the backend dies

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from environment variables (API.md, Settings)."""
        env = os.environ if env is None else env
        known = {
            "models_dir": env.get("MODELS_DIR"),
            "backend_url": env.get("BACKEND_URL"),
            "hf_endpoint": env.get("HF_ENDPOINT") or None,
            "hf_token": env.get("HF_TOKEN") or None,
            "api_key": env.get("PROXY_API_KEY") or None,
            "pull_concurrency": env_int(env, "PULL_CONCURRENCY"),
            "pull_queue_max": env_int(env, "PULL_QUEUE_MAX"),
            "pull_connections": env_int(env, "PULL_CONNECTIONS"),
            "pull_stall_timeout_s": env_float(env, "PULL_STALL_TIMEOUT_S"),
            "pull_max_retries": env_int(env, "PULL_MAX_RETRIES"),
            "pull_chunk_bytes": env_int(env, "PULL_CHUNK_BYTES"),  # not in the contract: tuning and process tests
            "backend_timeout_s": env_float(env, "BACKEND_TIMEOUT_S"),
            "backend_exit_file": env.get("BACKEND_EXIT_FILE") or None,
            "forward_max_in_flight": env_int(env, "FORWARD_MAX_IN_FLIGHT"),  # not in the contract either
        }
        values = {key: value for key, value in known.items() if value is not None}
        if "ALLOWED_REPOS" in env:
            values["allowed_repos"] = _split_list(env["ALLOWED_REPOS"])
        if "PRELOAD_MODELS" in env:
            values["preload_models"] = _split_list(env["PRELOAD_MODELS"])
        return cls(**values)

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)


def env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError as err:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from err


def env_float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        return float(raw)
    except ValueError as err:
        raise ValueError(f"{name} must be a number, got {raw!r}") from err


def env_bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")
