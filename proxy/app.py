"""The proxy sidecar's Flask application factory."""
from __future__ import annotations

import logging

from flask import Flask

from proxy.backend import BackendClient
from proxy.errors import register_error_handlers
from proxy.hubs.huggingface import HuggingFaceHub
from proxy.pulls.jobs import PullRegistry
from proxy.pulls.service import PullService
from proxy.pulls.transfer import TransferOptions
from proxy.retry import Backoff
from proxy.routes import forward, health, models, pull
from proxy.settings import Settings
from proxy.store import ModelStore


def create_app(settings: Settings | None = None, hub=None) -> Flask:
    """Build the proxy; `settings` defaults to the environment, `hub` to the Hugging Face Hub."""
    settings = settings or Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    register_error_handlers(app)

    backoff = Backoff(settings.pull_backoff_base_s, settings.pull_backoff_max_s)
    store = ModelStore(settings.models_dir)
    store.ensure_dirs()
    backend = BackendClient(settings.backend_url, settings.backend_timeout_s, settings.backend_connect_timeout_s)
    hub = hub or HuggingFaceHub(settings.hf_endpoint, settings.hf_token, settings.hub_timeout_s,
                                settings.pull_max_retries, backoff)
    registry = PullRegistry(settings.pull_concurrency, settings.pull_queue_max)
    options = TransferOptions(
        connections=max(1, settings.pull_connections), chunk_bytes=settings.pull_chunk_bytes,
        stall_timeout_s=settings.pull_stall_timeout_s, max_retries=settings.pull_max_retries, backoff=backoff)
    service = PullService(hub, store, registry, options, settings.allowed_repos,
                          settings.progress_interval_s, smoke_test=backend.smoke_test)
    app.extensions.update(settings=settings, store=store, backend=backend, hub=hub, pulls=registry,
                          pull_service=service)
    for module in (health, pull, models, forward):
        app.register_blueprint(module.bp)
    return app
