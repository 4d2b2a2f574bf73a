"""The proxy's services, wired once by proxy.app.build_services: one typed value the routes read."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Flask, current_app

if TYPE_CHECKING:
    from proxy.backend.client import BackendClient
    from proxy.metrics import Metrics
    from proxy.pulls.jobs import PullJobs
    from proxy.pulls.service import PullService
    from proxy.pulls.through import PullThrough
    from proxy.pushes.service import PushService
    from proxy.declared.reconcile import Reconciler
    from proxy.models_dir.retention import Retention
    from proxy.settings import Settings
    from proxy.sources.router import SourceRouter
    from proxy.models_dir.store import ModelStore
    from proxy.models_dir.usage import InFlight, UsageLog

EXTENSION = "gguf_proxy"  # the one key of app.extensions this app uses


@dataclass(frozen=True)
class Services:
    """Everything a request or a pull needs; `forward_slots` caps requests forwarded to the backend at once."""

    settings: Settings
    store: ModelStore
    backend: BackendClient
    source: SourceRouter
    pulls: PullJobs
    pull_service: PullService
    metrics: Metrics
    reconciler: Reconciler
    usage: UsageLog
    in_flight: InFlight
    retention: Retention
    push_service: PushService
    forward_slots: threading.BoundedSemaphore
    pull_through: PullThrough  # pulls a peer's miss asks for
    upstream_listings: threading.BoundedSemaphore  # caps the upstream listings asked for peers at once

    def attach(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self


def services_of(app: Flask) -> Services:
    """The services `app` was built with (a test's or a gunicorn hook's view of them)."""
    return app.extensions[EXTENSION]


def services() -> Services:
    """The current request's app's services."""
    return services_of(current_app)
