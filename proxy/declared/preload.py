"""Pulls started in the background when the proxy starts: interrupted ones, then the reconciler's (the
manifest's declared models, then PRELOAD_MODELS, an unpinned shorthand that never blocks readiness)."""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from proxy.sources.reference import is_registry_reference
from proxy.pulls.events import Complete, Failed
from proxy.pulls.request import PullRequest, parse_pull_request
from proxy.pulls.service import PullService

if TYPE_CHECKING:
    from proxy.services import Services

log = logging.getLogger(__name__)


def start_preload(services: Services) -> threading.Thread | None:
    """In a daemon thread: resume the pulls a previous run left unfinished, then run the reconciler (every
    declared model, then every PRELOAD_MODELS entry, and again on sync or a change of the manifest). None
    when there is nothing to do."""
    work = [(f"{body.get('model')}/{body.get('filename')}", body) for body in services.store.intents()]
    reconciler = services.reconciler
    if not work and not reconciler.active:
        return None

    def run() -> None:
        preload(work, services.pull_service)
        if reconciler.active:
            reconciler.run()

    thread = threading.Thread(target=run, name="preload", daemon=True)
    thread.start()
    return thread


def preload(work: list[tuple[str, Any]], service: PullService) -> None:
    """Pull each (label, body) to its end, one after another; every outcome shows in GET /v1/api/pulls."""
    for entry, body in work:
        final = service.start(body, remember=True).wait()
        if isinstance(final, Complete):
            log.info("preload of %s: %s%s", entry, final.filename, " (cached)" if final.cached else "")
        elif isinstance(final, Failed):
            log.warning("preload of %s failed: %s (%s)", entry, final.error, final.code)


def preload_body(entry: str) -> dict:
    """The pull body of a PRELOAD_MODELS entry: `owner/name`, `owner/name:QUANT`, `owner/name/path/to/file.gguf`,
    or a registry reference (`ollama://...`, `oci://...`, taken whole)."""
    if is_registry_reference(entry):
        return {"model": entry}
    parts = entry.split("/", 2)
    if len(parts) == 3:
        return {"model": f"{parts[0]}/{parts[1]}", "filename": parts[2]}
    return {"model": entry}


def parse_preload_entry(entry: str) -> PullRequest:
    """A PRELOAD_MODELS entry, checked as the pull endpoint does.

    Raises:
        ProxyError: invalid_request, invalid_repo_id, unsafe_filename, not_gguf, unsupported_source.
    """
    return parse_pull_request(preload_body(entry))
