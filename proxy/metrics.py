"""Prometheus metrics of one app, in its own registry. Labels are bounded: routes, codes, outcomes."""
from __future__ import annotations

import time
from typing import Callable

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from proxy.pulls.events import Failed

PULL_BUCKETS_S = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400)
BACKEND_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.pulls = Counter("proxy_pulls", "Pulls by outcome (complete, cached, error, rejected) and error code",
                             ["outcome", "code"], registry=r)
        self.pull_bytes = Counter("proxy_pull_bytes", "Bytes received from the Hub into staging", registry=r)
        self.pull_duration = Histogram("proxy_pull_duration_seconds", "Time from a pull's start to its end",
                                       ["outcome"], buckets=PULL_BUCKETS_S, registry=r)
        self.pulls_running = Gauge("proxy_pulls_running", "Pulls downloading now", registry=r)
        self.pulls_queued = Gauge("proxy_pulls_queued", "Pulls waiting for a download slot", registry=r)
        self.requests = Counter("proxy_http_requests", "Requests served, by route template and status",
                                ["route", "method", "status"], registry=r)
        self.backend_latency = Histogram("proxy_backend_request_seconds", "Time until the backend's response "
                                         "headers arrive", ["path"], buckets=BACKEND_BUCKETS_S, registry=r)
        self.evictions = Counter("proxy_evictions", "Installed files evicted, by reason (room, ttl)",
                                 ["reason"], registry=r)
        self.pushes = Counter("proxy_pushes", "Pushes by outcome (complete, error) and error code",
                              ["outcome", "code"], registry=r)
        self.push_bytes = Counter("proxy_push_bytes", "Bytes sent to registries (a retried upload's again)",
                                  registry=r)
        self.push_duration = Histogram("proxy_push_duration_seconds", "Time from a push's start to its end",
                                       ["outcome"], buckets=PULL_BUCKETS_S, registry=r)
        self.backend_up = Gauge("proxy_backend_up", "1 when the backend answers /health", registry=r)

    def count_pull(self, outcome: str, code: str | None, duration_s: float | None = None) -> None:
        self.pulls.labels(outcome=outcome, code=code or "").inc()
        if duration_s is not None:
            self.pull_duration.labels(outcome=outcome).observe(duration_s)

    def count_push(self, final, duration_s: float) -> None:
        """Called when a push ends, with its final event."""
        outcome = final.status
        self.pushes.labels(outcome=outcome, code=final.code if isinstance(final, Failed) else "").inc()
        self.push_duration.labels(outcome=outcome).observe(duration_s)

    def count_job(self, job) -> None:
        """Called when a pull job ends."""
        final = job.latest
        code = final.code if isinstance(final, Failed) else None
        self.count_pull(final.status, code, time.time() - job.created_at)

    def watch(self, queue_counts: Callable[[], tuple[int, int]], backend_up: Callable[[], bool]) -> None:
        """Gauges read at scrape time, so they are never stale."""
        self.pulls_running.set_function(lambda: queue_counts()[0])
        self.pulls_queued.set_function(lambda: queue_counts()[1])
        self.backend_up.set_function(lambda: 1.0 if backend_up() else 0.0)

    def render(self) -> Response:
        # generate_latest writes the classic text format (names escaped to underscores), which every
        # Prometheus parses: say so, as prometheus_client's own handler does for a scraper that asks for
        # nothing else. `content_type`, not `mimetype`: Flask appends a second charset to a mimetype.
        return Response(generate_latest(self.registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def install_request_metrics(app: Flask, metrics: Metrics) -> None:
    """Count every response by its route template (never the raw path, which is unbounded)."""

    @app.after_request
    def _count(response):
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = request.method if request.method in ("GET", "POST", "DELETE", "HEAD", "OPTIONS", "PUT") else "other"
        metrics.requests.labels(route=route, method=method, status=str(response.status_code)).inc()
        return response
