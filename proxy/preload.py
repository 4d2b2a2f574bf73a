"""Pulls started in the background when the proxy starts (interrupted ones, then PRELOAD_MODELS), never
blocking readiness."""
from __future__ import annotations

import logging
import threading
from functools import partial
from typing import Callable

from proxy import naming
from proxy.errors import ProxyError
from proxy.pulls.events import Complete, Failed, PullEvent
from proxy.pulls.jobs import PullRegistry
from proxy.pulls.request import PullRequest, parse_pull_request
from proxy.pulls.service import PullService

log = logging.getLogger(__name__)


def start_preload(services: dict) -> threading.Thread | None:
    """In a daemon thread, one after another: resume the pulls a previous run left unfinished, then pull
    every PRELOAD_MODELS entry. None when there is nothing to do."""
    work = [(f"{body.get('model')}/{body.get('filename')}", partial(parse_pull_request, body))
            for body in services["store"].intents()]
    work += [(entry, partial(parse_preload_entry, entry)) for entry in services["settings"].preload_models]
    if not work:
        return None
    thread = threading.Thread(target=preload, args=(work, services["pull_service"], services["pulls"]),
                              name="preload", daemon=True)
    thread.start()
    return thread


def preload(work: list[tuple[str, Callable[[], PullRequest]]], service: PullService,
            registry: PullRegistry) -> None:
    """Pull each (label, request) to its end; a failure is logged and recorded, and the next goes on."""
    for entry, parse in work:
        try:
            final = _pull(entry, parse, service, registry)
        except Exception:  # noqa: BLE001 - a preload must never take the proxy down
            log.exception("preload of %s failed", entry)
            error = ProxyError("internal_error", "internal error; see the proxy's log")
            final = _record_failure(entry, registry, error)
        if isinstance(final, Complete):
            log.info("preload of %s: %s%s", entry, final.filename, " (cached)" if final.cached else "")
        elif isinstance(final, Failed):
            log.warning("preload of %s failed: %s (%s)", entry, final.error, final.code)


def parse_preload_entry(entry: str) -> PullRequest:
    """`owner/name`, `owner/name:QUANT` or `owner/name/path/to/file.gguf`, checked as the pull endpoint does.

    Raises:
        ProxyError: invalid_request, invalid_repo_id, unsafe_filename, not_gguf.
    """
    parts = entry.split("/", 2)
    if len(parts) == 3:
        return parse_pull_request({"model": f"{parts[0]}/{parts[1]}", "filename": parts[2]})
    return parse_pull_request({"model": entry})


def _pull(entry: str, parse: Callable[[], PullRequest], service: PullService, registry: PullRegistry) -> PullEvent:
    """One entry: a job in the registry either way, so GET /v1/api/pulls shows how it went."""
    try:
        plan = service.plan(parse())
        cached = service.cached(plan)
        if cached is None:
            job, _ = service.submit(plan)
            return job.wait()
    except ProxyError as err:
        return _record_failure(entry, registry, err)
    return registry.record_ended(plan.request.repo, plan.key, cached).latest


def _record_failure(entry: str, registry: PullRegistry, err: ProxyError) -> PullEvent:
    parts = entry.split("/", 2)
    filename = naming.basename(parts[2]) if len(parts) == 3 else None
    return registry.record_ended("/".join(parts[:2]).partition(":")[0], filename, Failed.of(err)).latest
