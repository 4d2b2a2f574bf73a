"""Ollama's /api/pull over this proxy's pull (same checks, dedupe, resume): the request as our pull body, and our
pull events as Ollama's progress lines (`pulling manifest`, `pulling <digest>` with total/completed,
`verifying sha256 digest`, `writing manifest`, `success`; ollama/ollama server/images.go PullModel)."""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.ollama.names import HUB_ALIASES, LATEST
from proxy.pulls.events import Complete, Downloading, Failed, PullEvent, Starting, Verifying
from proxy.sources.reference import HUB_PREFIXES, is_registry_reference

log = logging.getLogger(__name__)


def pull_body(body: dict) -> dict:
    """Our pull body for an Ollama pull: `hf.co/owner/name[:QUANT]` from the Hub, a scheme as it says, any other
    name from an Ollama registry (`gemma3:270m`, `host:port/namespace/name:tag`).

    Raises:
        ProxyError: invalid_request (no model named).
    """
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ProxyError(ErrorCode.INVALID_REQUEST, "model is required")
    name = name.strip()
    hub = next((name[len(alias):] for alias in HUB_ALIASES if name.lower().startswith(alias)), None)
    if hub is not None:
        model = "hf.co/" + (hub[: -len(LATEST)] if hub.lower().endswith(LATEST) else hub)
    elif is_registry_reference(name) or name.lower().startswith(HUB_PREFIXES):
        model = name
    else:
        model = f"ollama://{name}"
    stream = body.get("stream")
    return {"model": model, **({"stream": stream} if isinstance(stream, bool) else {})}


class ProgressLines:
    """Turns one pull's events into Ollama's lines; `digest_of(filename)` gives a file's expected sha256 (hex)
    when the source says it, asked once per file, for the `pulling <digest>` lines clients key their bars by."""

    def __init__(self, digest_of: Callable[[str], str | None]):
        self._digest_of = digest_of
        self._digests: dict[str, str | None] = {}
        self._said: set[str] = set()

    def lines(self, events: Iterable[PullEvent]) -> Iterator[dict]:
        for event in events:
            yield from self._line(event)

    def _line(self, event: PullEvent) -> Iterator[dict]:
        if isinstance(event, Starting):
            yield from self._once({"status": "pulling manifest"})
        elif isinstance(event, Downloading):
            yield self._pulling(event.filename, event.completed, event.total)
        elif isinstance(event, Verifying):
            yield from self._once({"status": "verifying sha256 digest"})
        elif isinstance(event, Complete):
            yield from self._complete(event)
        elif isinstance(event, Failed):
            yield {"error": event.error}

    def _complete(self, event: Complete) -> Iterator[dict]:
        """A pull answered from what is installed says what Ollama says for layers it has: each at its total."""
        if event.sha256:
            self._digests.setdefault(event.filename, event.sha256)
        yield from self._once({"status": "pulling manifest"})
        if not any(line.startswith("pulling ") and line != "pulling manifest" for line in self._said):
            total = int(event.size_mb * 1e6)
            yield self._pulling(event.filename, total, total)
        yield from self._once({"status": "verifying sha256 digest"})
        yield {"status": "writing manifest"}
        yield {"status": "success"}

    def _pulling(self, filename: str, completed: int, total: int) -> dict:
        if filename not in self._digests:
            self._digests[filename] = self._digest_of(filename)
        digest = self._digests[filename]
        status = f"pulling {digest[:12]}" if digest else f"pulling {naming.basename(filename)}"
        self._said.add(status)
        line = {"status": status, **({"digest": f"sha256:{digest}"} if digest else {})}
        return {**line, "total": total, "completed": completed}

    def _once(self, line: dict) -> Iterator[dict]:
        if line["status"] not in self._said:
            self._said.add(line["status"])
            yield line


def source_digests(source, repo: str, revision: str) -> Callable[[str], str | None]:
    """digest_of for ProgressLines: the sha256 the source lists for a file; None when it cannot say."""

    def digest_of(filename: str) -> str | None:
        try:
            listing = source.list_files(repo, revision)
        except ProxyError as err:  # only a label for the progress bar: the pull itself checks the bytes
            log.info("no digest for %s's progress lines: %s", filename, err.code)
            return None
        name = naming.basename(filename)
        return next((f.sha256 for f in listing.files if naming.basename(f.filename) == name and f.sha256), None)

    return digest_of
