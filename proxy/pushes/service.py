"""The one way into a push for every caller (the HTTP route, the CLI's --local): parse the body, build the
artifact of an installed model, send the blobs the registry lacks, the manifest last."""
from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from proxy.errors import ErrorCode, ProxyError
from proxy.metrics import Metrics
from proxy.pulls.events import Failed, PullEvent
from proxy.pushes.artifact import Artifact, Blob, build_artifact
from proxy.pushes.events import Pushed, Pushing
from proxy.pushes.upload import RegistryUploader
from proxy.retry import Backoff
from proxy.sources.reference import RegistryRef, parse_reference, scheme_of
from proxy.sources.registry import RegistrySource
from proxy.models_dir.store import ModelStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushRequest:
    model: str
    target: RegistryRef
    stream: bool = True


def parse_push_request(body: Any) -> PushRequest:
    """Raises: ProxyError invalid_request, unsupported_source, invalid_repo_id."""
    if not isinstance(body, dict):
        raise ProxyError(ErrorCode.INVALID_REQUEST,
                         'the body must be a JSON object: {"model": ..., "target": "oci://..."}')
    model, target, stream = body.get("model"), body.get("target"), body.get("stream", True)
    if not isinstance(model, str) or not model.strip() or len(model) > 512:
        raise ProxyError(ErrorCode.INVALID_REQUEST, "model must name an installed model (its id or file name)")
    if not isinstance(target, str) or not target:
        raise ProxyError(ErrorCode.INVALID_REQUEST, "target must be an oci://host[:port]/repository:tag reference")
    if not isinstance(stream, bool):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "stream must be true or false")
    if scheme_of(target) != "oci":
        raise ProxyError(ErrorCode.UNSUPPORTED_SOURCE, "a push target must be oci://host[:port]/repository:tag")
    ref = parse_reference(target)
    if ref.digest:
        raise ProxyError(ErrorCode.INVALID_REPO_ID,
                         "a push target names a tag, not a digest: oci://host/repository:tag")
    return PushRequest(model.strip(), ref, stream)


@dataclass
class PreparedPush:
    """A push ready to run: the model's files are held (a shared lock each) until `release`, so no pull,
    delete or eviction of any process removes or replaces them while they are read."""

    request: PushRequest
    artifact: Artifact
    holding: contextlib.ExitStack

    def release(self) -> None:
        self.holding.close()


class PushService:
    def __init__(self, store: ModelStore, registry: RegistrySource, metrics: Metrics | None = None,
                 chunk_bytes: int = 64 * 1024 * 1024, max_attempts: int = 6, backoff: Backoff | None = None,
                 progress_interval_s: float = 0.5):
        self.store, self.registry, self.metrics = store, registry, metrics or Metrics()
        self.chunk_bytes, self.max_attempts, self.backoff = chunk_bytes, max_attempts, backoff or Backoff()
        self.progress_interval_s = progress_interval_s

    def prepare(self, body: Any) -> PreparedPush:
        """Parse the body and hold the model's files; `run` or `events` releases them.

        Raises:
            ProxyError: invalid_request, unsupported_source, invalid_repo_id, model_not_found, model_busy.
        """
        request = parse_push_request(body)
        holding = contextlib.ExitStack()
        try:
            for name in self.store.files_of_model(request.model):
                if not holding.enter_context(self.store.lock(name, blocking=False, shared=True)):
                    raise ProxyError(ErrorCode.MODEL_BUSY, f"{name} is being pulled or deleted; push it when that ends")
                if not self.store.final_path(name).is_file():
                    raise ProxyError(ErrorCode.MODEL_NOT_FOUND, f"{name} was removed; see GET /v1/api/models")
            return PreparedPush(request, build_artifact(self.store, request.model), holding)
        except BaseException:
            holding.close()
            raise

    def run(self, push: PreparedPush, emit: Callable[[PullEvent], None]) -> PullEvent:
        """Push, calling `emit` with progress; the final event (`complete`, or `error`), also emitted."""
        request, started = push.request, time.monotonic()
        try:
            final: PullEvent = self._push(request.target, push.artifact, emit)
        except ProxyError as err:
            final = Failed.of(err)
        except Exception:  # noqa: BLE001 - logged with its traceback; the client gets no internals
            log.exception("push of %s to %s failed", request.model, request.target.canonical)
            final = Failed("the push failed unexpectedly; see the proxy's log", ErrorCode.INTERNAL_ERROR)
        finally:
            push.release()
        self.metrics.count_push(final, time.monotonic() - started)
        emit(final)
        return final

    def events(self, push: PreparedPush) -> Iterator[PullEvent]:
        """The push's events as it runs, in a thread of its own started now: an upload reports progress
        mid-request, and a client that goes away does not stop the push (nor keep its files held)."""
        lines: queue.Queue[PullEvent] = queue.Queue()
        threading.Thread(target=self.run, args=(push, lines.put), daemon=True,
                         name=f"push {push.request.target.canonical}").start()
        return _until_final(lines)

    def _push(self, ref: RegistryRef, artifact: Artifact, emit: Callable[[PullEvent], None]) -> Pushed:
        uploader = RegistryUploader(self.registry.auth, self.registry.session, self.registry.base_url(ref), ref,
                                    self.registry.timeout_s, self.chunk_bytes, self.max_attempts, self.backoff)
        progress = _Progress(artifact.total, emit, self.progress_interval_s)
        for blob in (*(layer for layer, _ in artifact.layers), artifact.config):
            how = uploader.send_blob(blob, _mount_source(ref, blob), progress.sender(self.metrics.push_bytes.inc))
            progress.blob_done(blob.size)
            log.info("%s %s (%d bytes) for %s", how, blob.digest, blob.size, ref.canonical)
        digest = uploader.put_manifest(artifact.manifest())
        log.info("pushed %s (%d bytes, manifest %s)", ref.canonical, artifact.total, digest)
        return Pushed(ref.canonical, digest)


class _Progress:
    """`pushing` lines: blobs done plus the furthest the current blob got (a retried upload sends its bytes
    again without the count going back), at most one line each `interval_s`."""

    def __init__(self, total: int, emit: Callable[[PullEvent], None], interval_s: float):
        self.total, self.emit, self.interval_s = total, emit, interval_s
        self.done, self.furthest, self.last = 0, 0, 0.0
        self.emit(Pushing(0, total))

    def sender(self, on_bytes: Callable[[int], None]) -> Callable[[int, int], None]:
        """The uploader's callback: (bytes just sent, bytes of the blob sent so far in this attempt)."""
        def sent(count: int, position: int) -> None:
            on_bytes(count)
            if position > self.furthest:
                self.furthest = position
                self._report(force=False)
        return sent

    def blob_done(self, size: int) -> None:
        self.done, self.furthest = self.done + size, 0
        self._report(force=True)

    def _report(self, force: bool) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.interval_s:
            self.last = now
            self.emit(Pushing(self.done + self.furthest, self.total))


def _until_final(lines: queue.Queue[PullEvent]) -> Iterator[PullEvent]:
    while True:
        event = lines.get()
        yield event
        if event.ends:
            return


def _mount_source(ref: RegistryRef, blob: Blob) -> str | None:
    """The repository of the same registry the file came from, when it is another one."""
    if not blob.source or scheme_of(blob.source) != "oci":
        return None
    try:
        source = parse_reference(blob.source)
    except ProxyError:
        return None
    return source.repository if source.host == ref.host and source.repository != ref.repository else None
