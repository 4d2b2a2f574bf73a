"""The proxy sidecar's Flask application factory."""
from __future__ import annotations

import atexit
import logging
import threading
from pathlib import Path
from typing import Callable

from flask import Flask

from core.errors import OLLAMA_ERRORS_CONFIG
from core.naming import HUB_SCHEME
from core.serving import LOG_FORMAT
from proxy.backend.client import BackendClient
from proxy.errors import register_error_handlers
from proxy.metrics import Metrics, install_request_metrics
from proxy.sources.cooldown import MirrorHealth
from proxy.sources.huggingface import HuggingFaceHub
from proxy.sources.mirrors import MirroredHub
from proxy.sources.reference import REGISTRY_SCHEMES
from proxy.sources.registry import RegistrySource
from proxy.sources.registry_auth import default_auth_file, load_auth_file
from proxy.sources.router import SourceRouter
from proxy.declared.preload import preload_body, start_preload
from proxy.pulls.install import Installer
from proxy.pulls.jobs import PullJobs
from proxy.pulls.planning import Planner
from proxy.pulls.service import PullService
from proxy.pulls.through import PullThrough
from proxy.pulls.transfer import TransferOptions
from proxy.declared.reconcile import Reconciler
from proxy.declared.residency_pin import ResidencyPinner
from proxy.retry import Backoff
from proxy.pushes.service import PushService
from proxy.services import Services
from proxy.routes import forward, health, manifest, models, observability, peer, pull, push
from proxy.routes import embeddings, ollama, ollama_generate, ollama_models, residency
from proxy.routes import anthropic, responses
from proxy.routes import llama_server
from proxy.settings import Settings
from proxy.models_dir.staging import start_staging_sweeper
from proxy.models_dir.store import META, ModelStore
from proxy.models_dir.usage import InFlight, UsageLog
from proxy.models_dir.retention import Retention


def create_app(settings: Settings | None = None, source=None) -> Flask:
    """Build the proxy; `settings` defaults to the environment, `source` to the Hugging Face Hub.

    Raises:
        ManifestError: MODELS_MANIFEST cannot be read or is malformed; the proxy must not start half-configured.
    """
    settings = settings or Settings.from_env()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.config[OLLAMA_ERRORS_CONFIG] = True  # errors on /api/* in Ollama's shape
    register_error_handlers(app)
    services = build_services(settings, source)
    services.attach(app)
    install_request_metrics(app, services.metrics)
    for module in (health, pull, push, models, forward, observability, manifest, peer,
                   ollama, ollama_generate, ollama_models, residency, embeddings, anthropic, responses, llama_server):
        app.register_blueprint(module.bp)
    start_staging_sweeper(services.store, settings.staging_sweep_interval_s, also=(services.retention.sweep,))
    services.usage.start_flusher(settings.last_used_flush_interval_s)
    atexit.register(services.usage.flush)  # gunicorn's worker_exit flushes too
    start_preload(services)
    return app


def build_services(settings: Settings, source=None, protected: Callable[[str], bool] | None = None) -> Services:
    """Everything a pull needs, wired once; the app and `python -m proxy --local` both use it.

    `protected(filename)`: whether a file must never be evicted (declared models); also settable later as
    `services.retention.protected`.
    """
    metrics = Metrics()
    backoff = Backoff(settings.pull_backoff_base_s, settings.pull_backoff_max_s)
    store = ModelStore(settings.models_dir)
    store.ensure_dirs()
    backend = BackendClient(settings.backend_url, settings.backend_timeout_s, settings.backend_connect_timeout_s,
                            observe=lambda path, s: metrics.backend_latency.labels(path=path).observe(s),
                            exit_file=settings.backend_exit_file)
    mirrors = MirrorHealth(settings.mirror_cooldown_s, settings.mirror_timeout_s, settings.mirror_busy_wait_s)
    registries = RegistrySource(_registry_credentials(settings), settings.insecure_registries,
                                settings.hub_timeout_s, settings.pull_max_retries, backoff)
    # The sources, by scheme; adding one is its module and a line here (SourceRouter.register).
    source = SourceRouter({HUB_SCHEME: source or _hub_source(settings, backoff, mirrors),
                           **dict.fromkeys(REGISTRY_SCHEMES, registries)})
    pull_jobs = PullJobs(settings.pull_concurrency, settings.pull_queue_max)
    options = TransferOptions(
        connections=max(1, settings.pull_connections), chunk_bytes=settings.pull_chunk_bytes,
        stall_timeout_s=settings.pull_stall_timeout_s, max_retries=settings.pull_max_retries, backoff=backoff)
    installer = Installer(store, smoke_test=backend.smoke_test)
    installer.ensure_dirs()
    usage, in_flight = UsageLog(store.root / META / "last_used.json", store.provenance.lock_path), InFlight()
    retention = Retention(
        store, usage, settings.models_max_bytes, settings.models_ttl_days, protected=protected or (lambda name: False),
        in_flight=in_flight.busy, pulling=lambda: {job.key for job in pull_jobs.jobs() if not job.done},
        on_evict=lambda filename, reason: metrics.evictions.labels(reason=reason).inc())
    planner = Planner(source, store, installer, settings.allowed_repos, retention)
    service = PullService(planner, installer, pull_jobs, options, metrics, settings.progress_interval_s,
                          on_used=usage.touch, mirrors=mirrors)
    metrics.watch(pull_jobs.counts, lambda: backend.health() is not None)
    metrics.watch_serving(backend)
    reconciler = Reconciler(service, store, settings.models_manifest,
                            tuple(preload_body(entry) for entry in settings.preload_models),
                            settings.manifest_poll_interval_s, pinner=ResidencyPinner(backend))
    reconciler.load()  # before anything runs: a malformed manifest stops the start here
    declared, protected = reconciler.declared_filenames, retention.protected
    retention.protected = lambda name: name in declared() or protected(name)  # declared models are never evicted
    pushes = PushService(store, registries, metrics, settings.push_chunk_bytes, settings.pull_max_retries,
                         backoff, settings.progress_interval_s)
    return Services(settings=settings, store=store, backend=backend, source=source, pulls=pull_jobs,
                    pull_service=service, metrics=metrics, reconciler=reconciler, usage=usage, in_flight=in_flight,
                    retention=retention, push_service=pushes,
                    forward_slots=threading.BoundedSemaphore(settings.forward_max_in_flight),
                    pull_through=PullThrough(service),
                    upstream_listings=threading.BoundedSemaphore(peer.UPSTREAM_LISTINGS_MAX))


def _hub_source(settings: Settings, backoff: Backoff, health: MirrorHealth):
    """The Hub, behind HF_MIRRORS when set. Mirrors never get HF_TOKEN (it is the Hub's), nor this proxy's own
    PROXY_API_KEY (a third-party mirror would learn it); they get MIRROR_API_KEY, the fleet's key, so a peer hands
    over the private and gated files it pulled with its token (and this proxy, in turn, only to requests bearing
    the key). A mirror gets short timeouts and one attempt: the next source is there (MirroredHub)."""
    hub = HuggingFaceHub(settings.hf_endpoint, settings.hf_token, settings.hub_timeout_s,
                         settings.pull_max_retries, backoff)
    if not settings.hf_mirrors:
        return hub
    mirrors = [HuggingFaceHub(url, settings.mirror_api_key, min(settings.hub_timeout_s, health.timeout_s), 1,
                              backoff, busy_wait_s=health.busy_wait_s)
               for url in settings.hf_mirrors]
    return MirroredHub(mirrors, hub, health)


def _registry_credentials(settings: Settings) -> dict:
    """Raises: ValueError when REGISTRY_AUTH_FILE is set and unreadable or malformed (the proxy does not start)."""
    if settings.registry_auth_file:
        return load_auth_file(Path(settings.registry_auth_file), required=True)
    return load_auth_file(default_auth_file(settings.docker_config), required=False)
