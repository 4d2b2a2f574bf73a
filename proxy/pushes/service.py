"""The one way into a push for every caller (the HTTP route, the CLI's --local): parse the body, build the
artifact of an installed model, send the blobs the registry lacks, the manifest last."""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from proxy.errors import ProxyError
from proxy.pulls.events import Failed, PullEvent
from proxy.pushes.artifact import Artifact, Blob, build_artifact
from proxy.pushes.events import Pushed, Pushing
from proxy.pushes.upload import RegistryUploader
from proxy.sources.reference import RegistryRef, parse_reference, scheme_of
from proxy.sources.registry import RegistrySource
from proxy.store import ModelStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushRequest:
    model: str
    target: RegistryRef
    stream: bool = True


def parse_push_request(body: Any) -> PushRequest:
    """Raises: ProxyError invalid_request, unsupported_source, invalid_repo_id."""
    if not isinstance(body, dict):
        raise ProxyError("invalid_request", 'the body must be a JSON object: {"model": ..., "target": "oci://..."}')
    model, target, stream = body.get("model"), body.get("target"), body.get("stream", True)
    if not isinstance(model, str) or not model.strip() or len(model) > 512:
        raise ProxyError("invalid_request", "model must name an installed model (its id or file name)")
    if not isinstance(target, str) or not target:
        raise ProxyError("invalid_request", "target must be an oci://host[:port]/repository:tag reference")
    if not isinstance(stream, bool):
        raise ProxyError("invalid_request", "stream must be true or false")
    if scheme_of(target) != "oci":
        raise ProxyError("unsupported_source", "a push target must be oci://host[:port]/repository:tag")
    ref = parse_reference(target)
    if ref.digest:
        raise ProxyError("invalid_repo_id", "a push target names a tag, not a digest: oci://host/repository:tag")
    return PushRequest(model.strip(), ref, stream)


class PushService:
    def __init__(self, store: ModelStore, registry: RegistrySource, progress_interval_s: float = 0.5):
        self.store, self.registry, self.progress_interval_s = store, registry, progress_interval_s

    def prepare(self, body: Any) -> tuple[PushRequest, Artifact]:
        """Raises: ProxyError invalid_request, unsupported_source, invalid_repo_id, model_not_found."""
        request = parse_push_request(body)
        return request, build_artifact(self.store, request.model)

    def run(self, request: PushRequest, artifact: Artifact, emit: Callable[[PullEvent], None]) -> PullEvent:
        """Push, calling `emit` with progress; the final event (`complete`, or `error`), also emitted."""
        try:
            final: PullEvent = self._push(request.target, artifact, emit)
        except ProxyError as err:
            final = Failed.of(err)
        except Exception:  # noqa: BLE001 - logged with its traceback; the client gets no internals
            log.exception("push of %s to %s failed", request.model, request.target.canonical)
            final = Failed("the push failed unexpectedly; see the proxy's log", "internal_error")
        emit(final)
        return final

    def events(self, request: PushRequest, artifact: Artifact) -> Iterator[PullEvent]:
        """The push's events as it runs (in a thread of its own: an upload reports progress mid-request)."""
        lines: queue.Queue[PullEvent] = queue.Queue()
        threading.Thread(target=self.run, args=(request, artifact, lines.put), daemon=True,
                         name=f"push {request.target.canonical}").start()
        while True:
            event = lines.get()
            yield event
            if event.ends:
                return

    def _push(self, ref: RegistryRef, artifact: Artifact, emit: Callable[[PullEvent], None]) -> Pushed:
        uploader = RegistryUploader(self.registry.auth, self.registry.session, self.registry.base_url(ref), ref,
                                    self.registry.timeout_s)
        total, done, last = artifact.total, [0], [0.0]

        def sent(count: int, force: bool = False) -> None:
            done[0] += count
            now = time.monotonic()
            if force or now - last[0] >= self.progress_interval_s:
                last[0] = now
                emit(Pushing(done[0], total))

        sent(0, force=True)
        for blob in (*(layer for layer, _ in artifact.layers), artifact.config):
            self._send_blob(uploader, ref, blob, sent)
            sent(0, force=True)
        digest = uploader.put_manifest(artifact.manifest())
        log.info("pushed %s (%d bytes, manifest %s)", ref.canonical, total, digest)
        return Pushed(ref.canonical, digest)

    def _send_blob(self, uploader: RegistryUploader, ref: RegistryRef, blob: Blob,
                   sent: Callable[[int], None]) -> None:
        """HEAD first; a mount from the repository the file was pulled from; else an upload."""
        if uploader.has_blob(blob.digest):
            sent(blob.size)
            return
        location = uploader.start_upload(blob.digest, _mount_source(ref, blob))
        if location is None:
            sent(blob.size)
            return
        uploader.upload(location, blob, sent)


def _mount_source(ref: RegistryRef, blob: Blob) -> str | None:
    """The repository of the same registry the file came from, when it is another one."""
    if not blob.source or scheme_of(blob.source) != "oci":
        return None
    try:
        source = parse_reference(blob.source)
    except ProxyError:
        return None
    return source.repository if source.host == ref.host and source.repository != ref.repository else None
