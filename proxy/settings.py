"""Proxy settings: one frozen value built from the environment in one place, each field described."""
from __future__ import annotations

from dataclasses import dataclass

from core.env import EnvSettings, setting


@dataclass(frozen=True)
class Settings(EnvSettings):
    """Everything the proxy is configured with. Tests build it directly with small timeouts.

    Fields with a variable are read by `from_env`; docs/api.md's settings table is the contract for
    those it lists. The others are not in the contract: tests and benchmarks shrink them.
    """

    models_dir: str = setting("/models", "MODELS_DIR", "where models live; shared by proxy and backend")
    backend_url: str = setting("http://127.0.0.1:8081", "BACKEND_URL", "the inference server the proxy fronts")
    hf_endpoint: str | None = setting(
        None, "HF_ENDPOINT", "a Hub mirror; None: huggingface_hub's own (HF_ENDPOINT or the public Hub)")
    hf_token: str | None = setting(
        None, "HF_TOKEN", "token for private and gated repos; never logged, never echoed", repr=False)
    api_key: str | None = setting(
        None, "PROXY_API_KEY", "when set, pull and delete need `Authorization: Bearer <key>`", repr=False)
    hf_mirrors: tuple[str, ...] = setting(
        (), "HF_MIRRORS", "comma-separated Hub-compatible endpoints (peers, mirrors) tried in order before the Hub")
    mirror_pull_through: bool = setting(
        False, "MIRROR_PULL_THROUGH", "when a peer asks for a Hub file this proxy lacks, pull it (503 + Retry-After "
        "until installed) so a fleet fetches each file from the Hub once")
    mirror_api_key: str | None = setting(
        None, "MIRROR_API_KEY", "the bearer token shown to HF_MIRRORS (a fleet's PROXY_API_KEY); without it mirrors "
        "get no key", repr=False)
    mirror_cooldown_s: float = setting(
        60.0, "MIRROR_COOLDOWN_S", "a mirror that failed, answered what does not parse, or asked to wait is skipped "
        "by every pull for this long")
    # A bad mirror delays a pull by at most about these (docs/api.md: under 10 s), then it cools down.
    mirror_timeout_s: float = setting(
        3.0, None, "how long a mirror may take to answer a call or to send the next byte of a file")
    mirror_busy_wait_s: float = setting(
        6.0, None, "how long in all a pull waits on a mirror's 503 + Retry-After (a peer pulling it through)")
    allowed_repos: tuple[str, ...] = setting(
        (), "ALLOWED_REPOS", "comma-separated glob patterns of the repos that may be pulled; empty: all")
    registry_auth_file: str | None = setting(
        None, "REGISTRY_AUTH_FILE", "registry credentials in Docker's config.json format; unset: "
        "$DOCKER_CONFIG/config.json, else ~/.docker/config.json")
    docker_config: str | None = setting(None, "DOCKER_CONFIG", "Docker's config folder (REGISTRY_AUTH_FILE's default)")
    insecure_registries: tuple[str, ...] = setting(
        (), "INSECURE_REGISTRIES", "comma-separated host[:port] of registries that may be reached over plain HTTP")
    pull_concurrency: int = setting(1, "PULL_CONCURRENCY", "downloads running at once; more wait in a queue")
    pull_queue_max: int = setting(8, "PULL_QUEUE_MAX", "pulls allowed to wait; past that a pull gets 409")
    pull_connections: int = setting(
        8, "PULL_CONNECTIONS", "ranged connections one file is fetched over (1 = a single stream)")
    pull_stall_timeout_s: float = setting(
        30.0, "PULL_STALL_TIMEOUT_S", "a connection that delivers no byte for this long is dropped and retried")
    pull_max_retries: int = setting(
        6, "PULL_MAX_RETRIES", "consecutive failed attempts (no byte gained) before hub_unavailable")
    preload_models: tuple[str, ...] = setting(
        (), "PRELOAD_MODELS", "comma-separated repo[:QUANT] or repo/file, pulled in the background at start")
    models_manifest: str | None = setting(
        None, "MODELS_MANIFEST", "YAML or JSON file declaring the models this instance must hold, with pins")
    manifest_poll_interval_s: float = setting(
        30.0, "MODELS_MANIFEST_POLL_S", "how often the manifest's content is compared with the last one read "
        "(the contract's within 60 s); a change reconciles")
    pull_chunk_bytes: int = setting(
        16 * 1024 * 1024, "PULL_CHUNK_BYTES", "ranged part size; smaller parts keep the hash close behind")
    push_chunk_bytes: int = setting(
        64 * 1024 * 1024, "PUSH_CHUNK_BYTES", "a pushed blob larger than this is uploaded in PATCH chunks of this "
        "size (registries such as ECR and GHCR cap one request's body); smaller ones in one PUT")
    pull_backoff_base_s: float = setting(1.0, None, "first wait before a retry; doubles each time")
    pull_backoff_max_s: float = setting(30.0, None, "longest wait between retries")
    hub_timeout_s: float = setting(20.0, None, "timeout of one Hub API call (listing, metadata)")
    progress_interval_s: float = setting(0.5, None, "at most one downloading line per pull this often")
    staging_sweep_interval_s: float = setting(
        3600.0, None, "how often day-old dead staging, week-old quarantine and models past their TTL are removed")
    models_max_bytes: int | None = setting(
        None, "MODELS_MAX_BYTES", "disk budget of MODELS_DIR; least-recently-used models are evicted to make room")
    models_ttl_days: float | None = setting(
        None, "MODELS_TTL_DAYS", "models not used for this many days are evicted (off by default)")
    last_used_flush_interval_s: float = setting(
        30.0, None, "how often last-used times are written to MODELS_DIR; a restart loses at most this much")
    backend_timeout_s: float = setting(
        300.0, "BACKEND_TIMEOUT_S", "how long the proxy waits for a backend answer or the next streamed chunk")
    backend_connect_timeout_s: float = setting(5.0, None, "how long connecting to the backend may take")
    # Each forwarded request holds a gunicorn thread while the backend answers, so gunicorn.conf.py adds this
    # many threads to PROXY_THREADS; it stays below the backend's own threads (HTTP_THREADS, 32) so that its
    # /health is never queued.
    forward_max_in_flight: int = setting(
        24, "FORWARD_MAX_IN_FLIGHT", "requests forwarded at once; more are answered 503 server_busy at once")
    max_body_bytes: int = setting(1024 * 1024, None, "largest request body; more is 413 body_too_large")
    backend_exit_file: str | None = setting(
        None, "BACKEND_EXIT_FILE", "where scripts/start.sh and docker/start.sh say why the backend died")
    # Read by proxy/gunicorn.conf.py; gunicorn's own flags (--bind, ...) win over them.
    host: str = setting("0.0.0.0", "HOST", "address the proxy listens on")
    port: int = setting(8080, "PORT", "port the proxy listens on")
    proxy_threads: int = setting(
        16, "PROXY_THREADS", "gunicorn threads for everything but forwarding: probes, API calls, pull streams")
    graceful_timeout_s: int = setting(
        20, "PROXY_GRACEFUL_TIMEOUT_S", "seconds running pulls get to save their progress after SIGTERM")
    log_level: str = setting("info", "LOG_LEVEL", "gunicorn's log level")
