"""Prometheus metrics of one app, in its own registry. Labels are bounded: routes, codes, outcomes.

The backend's serving figures (time to first token, tokens, slots, queue) are read from its GET /stats at
scrape time rather than counted here: the backend is one process for every proxy worker, so each worker's
/metrics shows the same backend-wide values and nothing needs summing across workers.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterator

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from proxy.errors import ProxyError

PULL_BUCKETS_S = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400)
BACKEND_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# A scrape must not hang on a busy backend: its /stats answers from counters, at once.
STATS_TIMEOUT_S = 2.0


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
        self.pushes.labels(outcome=outcome, code=getattr(final, "code", None) or "").inc()  # Failed's code
        self.push_duration.labels(outcome=outcome).observe(duration_s)

    def count_job(self, job) -> None:
        """Called when a pull job ends."""
        final = job.latest
        code = getattr(final, "code", None)  # a Failed event's; metrics sits below the pulls, it imports none
        self.count_pull(final.status, code, time.time() - job.created_at)

    def watch(self, queue_counts: Callable[[], tuple[int, int]], backend_up: Callable[[], bool]) -> None:
        """Gauges read at scrape time, so they are never stale."""
        self.pulls_running.set_function(lambda: queue_counts()[0])
        self.pulls_queued.set_function(lambda: queue_counts()[1])
        self.backend_up.set_function(lambda: 1.0 if backend_up() else 0.0)

    def watch_serving(self, backend) -> None:
        """Export the backend's serving figures (GET /stats) at each scrape; absent when it has none."""
        self.registry.register(BackendServingCollector(lambda: backend_stats(backend)))

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


def backend_stats(backend) -> dict | None:
    """The backend's GET /stats JSON; None when it is down, slow, or has no /stats (Shimmy, an older backend)."""
    try:
        response = backend.request("GET", "/stats", timeout_s=STATS_TIMEOUT_S, probe=True)
    except ProxyError:
        return None
    with response:
        if response.status_code != 200:
            return None
        try:
            stats = response.json()
        except ValueError:
            return None
    return stats if isinstance(stats, dict) else None


class BackendServingCollector:
    """The backend's /stats as Prometheus families, fetched when scraped. A figure missing or malformed in
    the answer is left out alone; no answer leaves them all out. Never raises: a scrape must not fail."""

    def __init__(self, fetch: Callable[[], dict | None]):
        self._fetch = fetch

    def describe(self) -> list[Metric]:
        return []  # registering must not call the backend (the registry collects to learn names otherwise)

    def collect(self) -> Iterator[Metric]:
        stats = self._fetch()
        if not isinstance(stats, dict):
            return
        slots = stats.get("slots") if isinstance(stats.get("slots"), dict) else {}
        families = (
            _histogram("proxy_backend_time_to_first_token_seconds",
                       "Time from a request's arrival at the backend to its first generated token",
                       stats.get("ttft_seconds")),
            _histogram("proxy_backend_time_per_output_token_seconds",
                       "Time between consecutive generated tokens of one request", stats.get("tpot_seconds")),
            _scalar(CounterMetricFamily, "proxy_backend_prompt_tokens", "Prompt tokens the backend evaluated",
                    stats.get("prompt_tokens")),
            _scalar(CounterMetricFamily, "proxy_backend_generated_tokens", "Tokens the backend generated",
                    stats.get("generated_tokens")),
            _scalar(GaugeMetricFamily, "proxy_backend_slots_busy", "Backend slots generating now",
                    slots.get("busy")),
            _scalar(GaugeMetricFamily, "proxy_backend_slots", "Backend slots (requests decoded together), "
                    "over its loaded models", slots.get("total")),
            _scalar(GaugeMetricFamily, "proxy_backend_queue_depth", "Requests waiting for a backend slot",
                    stats.get("queue")),
        )
        yield from (family for family in families if family is not None)
        yield from _model_families(stats.get("models"))
        yield from _prompt_cache_families(stats.get("prompt_cache"))


# Per loaded model (label model_name), under the names the inference gateway's endpoint picker reads by default
# (vLLM's) and llama-server's, for its dashboards: (family, name, help, the /stats entry's key).
MODEL_FIGURES = (
    (GaugeMetricFamily, "vllm:num_requests_waiting", "Requests waiting for a slot", "waiting"),
    (GaugeMetricFamily, "vllm:num_requests_running", "Requests holding a slot", "running"),
    (GaugeMetricFamily, "vllm:kv_cache_usage_perc", "KV cells running requests hold over the cache's, 0-1",
     "kv_usage"),
    (GaugeMetricFamily, "llamacpp:requests_processing", "Requests holding a slot", "running"),
    (GaugeMetricFamily, "llamacpp:requests_deferred", "Requests waiting for a slot", "waiting"),
    (CounterMetricFamily, "llamacpp:prompt_tokens", "Prompt tokens evaluated", "prompt_tokens"),
    (CounterMetricFamily, "llamacpp:prompt_seconds", "Seconds requests spent reading their prompt",
     "prompt_seconds"),
    (CounterMetricFamily, "llamacpp:tokens_predicted", "Tokens generated", "generated_tokens"),
    (CounterMetricFamily, "llamacpp:tokens_predicted_seconds", "Seconds requests spent generating",
     "generated_seconds"),
    (CounterMetricFamily, "llamacpp:n_decode", "llama_decode calls", "decodes"),
    (GaugeMetricFamily, "llamacpp:n_busy_slots_per_decode", "Average slots busy in a llama_decode",
     "busy_slots_per_decode"),
)


def _model_families(models) -> Iterator[Metric]:
    """/stats's `models` (one entry a loaded model) as labelled families; an entry or figure that is malformed
    is left out alone."""
    entries = [m for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)] \
        if isinstance(models, list) else []
    for family_type, name, documentation, key in MODEL_FIGURES:
        family = family_type(name, documentation, labels=["model_name"])
        for entry in entries:
            value = _count(entry.get(key))
            if value is not None and (key != "kv_usage" or value <= 1):
                family.add_metric([entry["id"]], value)
        if family.samples:
            yield family
    info = GaugeMetricFamily("vllm:cache_config_info", "KV cache layout: block_size tokens a block, "
                             "num_gpu_blocks blocks", labels=["model_name", "block_size", "num_gpu_blocks"])
    for entry in entries:
        block_size, blocks = _count(entry.get("block_size")), _count(entry.get("blocks"))
        if block_size and blocks is not None:
            info.add_metric([entry["id"], str(int(block_size)), str(int(blocks))], 1.0)
    if info.samples:
        yield info


def _prompt_cache_families(cache) -> Iterator[Metric]:
    """/stats's `prompt_cache` (docs/api.md, Prompt cache): hits a tier (slot, memory, disk), misses, the prompt
    tokens each tier saved, and the bytes each of memory and disk holds."""
    if not isinstance(cache, dict):
        return
    for family_type, name, documentation, key in (
            (CounterMetricFamily, "proxy_backend_prompt_cache_hits", "Prompts that started from a cached prefix "
             "of a block or more, by where it was: the slot, the prompt cache's memory or its disk", "hits"),
            (CounterMetricFamily, "proxy_backend_prompt_cache_cached_tokens", "Prompt tokens not evaluated "
             "again, by where their state was", "cached_tokens")):
        family = family_type(name, documentation, labels=["tier"])
        for tier, value in (cache.get(key) or {}).items() if isinstance(cache.get(key), dict) else ():
            if _count(value) is not None:
                family.add_metric([str(tier)], _count(value))
        yield family
    misses = _scalar(CounterMetricFamily, "proxy_backend_prompt_cache_misses",
                     "Prompts that found no cached prefix of a block or more", cache.get("misses"))
    if misses is not None:
        yield misses
    held = GaugeMetricFamily("proxy_backend_prompt_cache_bytes", "Bytes of KV states the prompt cache holds, "
                             "in memory (PROMPT_CACHE_BYTES) and on disk (PROMPT_CACHE_DISK_BYTES)", labels=["tier"])
    for tier in ("memory", "disk"):
        value = _count((cache.get(tier) or {}).get("bytes")) if isinstance(cache.get(tier), dict) else None
        if value is not None:
            held.add_metric([tier], value)
    yield held


def _count(value) -> float | None:
    """A non-negative finite number from JSON (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _scalar(family: type, name: str, documentation: str, value) -> Metric | None:
    number = _count(value)
    return None if number is None else family(name, documentation, value=number)


def _histogram(name: str, documentation: str, value) -> HistogramMetricFamily | None:
    """/stats's `{"buckets": [[le, cumulative], ..., ["+Inf", n]], "sum", "count"}`; None when malformed
    (unordered bounds, counts that fall, a negative bound)."""
    if not isinstance(value, dict) or not isinstance(value.get("buckets"), list):
        return None
    total, count = _count(value.get("sum")), _count(value.get("count"))
    buckets: list[tuple[float, float]] = []
    for pair in value["buckets"]:
        if not isinstance(pair, list) or len(pair) != 2:
            return None
        bound, cumulative = _bound(pair[0]), _count(pair[1])
        if bound is None or cumulative is None:
            return None
        if buckets and (bound <= buckets[-1][0] or cumulative < buckets[-1][1]):
            return None
        buckets.append((bound, cumulative))
    if not buckets or buckets[-1][0] != math.inf:
        if count is None or (buckets and count < buckets[-1][1]):
            return None
        buckets.append((math.inf, count))
    if total is None:
        return None
    family = HistogramMetricFamily(name, documentation)
    family.add_metric([], [(floatToGoString(le), n) for le, n in buckets], total)
    return family


def _bound(value) -> float | None:
    """A bucket's upper bound: a number, or "+Inf"."""
    if value == "+Inf":
        return math.inf
    return _count(value)
