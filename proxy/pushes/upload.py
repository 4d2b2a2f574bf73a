"""The distribution API's push side: HEAD a blob, mount it from another repository, upload it (one streamed
PUT for a blob up to `chunk_bytes`, else PATCH chunks with `Content-Range` and a closing PUT ?digest=), PUT
the manifest. A transient failure (5xx, 429, a dropped connection, a lost upload session) starts that blob
again from its HEAD, in a new upload session, up to `max_attempts` attempts. Auth is the pull's
(proxy/sources/registry_auth.py), with the `pull,push` scope a Bearer token needs for writing."""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Callable
from urllib.parse import urljoin

import requests

from proxy.errors import ErrorCode, ProxyError
from proxy.pushes.artifact import OCI_MANIFEST, Blob
from proxy.retry import Backoff, parse_retry_after
from proxy.sources.reference import RegistryRef
from proxy.sources.registry_auth import RegistryAuth
from proxy.sources.registry_http import RegistryClient, error_codes

log = logging.getLogger(__name__)
READ_BYTES = 1024 * 1024
CHUNK_MIN_HEADER = "OCI-Chunk-Min-Length"  # the OCI distribution spec's smallest PATCH a registry takes


class TransientError(ProxyError):
    """A failure worth another attempt: the registry's 5xx or 429, a dropped connection, a lost session."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(ErrorCode.HUB_UNAVAILABLE, message)
        self.retry_after_s = retry_after_s


class ProgressReader:
    """`size` bytes of a file from where it stands, read by requests as a body of known length, reporting
    each chunk read."""

    def __init__(self, handle, size: int, on_read: Callable[[int], None]):
        self._handle, self._left, self._on_read = handle, size, on_read
        self._size = size

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int = -1) -> bytes:
        wanted = READ_BYTES if amount is None or amount < 0 else max(amount, READ_BYTES)
        chunk = self._handle.read(min(wanted, self._left))
        self._left -= len(chunk)
        if chunk:
            self._on_read(len(chunk))
        return chunk


class RegistryUploader:
    """Push requests to one registry repository (`ref`), each answering the registry's challenges once."""

    def __init__(self, auth: RegistryAuth, session: requests.Session, base_url: str, ref: RegistryRef,
                 timeout_s: float, chunk_bytes: int = 64 * 1024 * 1024, max_attempts: int = 6,
                 backoff: Backoff | None = None, stop: threading.Event | None = None):
        self._auth, self._session, self._base, self._ref, self._timeout_s = auth, session, base_url, ref, timeout_s
        self._chunk_bytes, self._max_attempts = max(1, chunk_bytes), max(1, max_attempts)
        self._backoff, self._stop = backoff or Backoff(), stop or threading.Event()
        self._client = RegistryClient(auth, session, ref, timeout_s)

    def send_blob(self, blob: Blob, mount_from: str | None, on_sent: Callable[[int, int], None]) -> str:
        """Make the registry hold `blob`: "present" (HEAD), "mounted" (from `mount_from`) or "uploaded".
        `on_sent(count, position)`: bytes just sent, and of the blob so far in this attempt (a retried upload
        starts again from 0).

        Raises:
            ProxyError: source_auth_failed, hub_unavailable (not transient, or after the attempts).
        """
        def attempt() -> str:
            position = [0]

            def sent(count: int, at: int | None = None) -> None:  # `at`: a resumed upload goes on from there
                position[0] = (position[0] if at is None else at) + count
                on_sent(count, position[0])
            return self._send_blob(blob, mount_from, sent)

        return self.retrying(f"pushing {blob.digest}", attempt)

    def put_manifest(self, body: bytes) -> str:
        """PUT the manifest under the tag; its digest.

        Raises:
            ProxyError: source_auth_failed, hub_unavailable.
        """
        def put() -> None:
            response = self._send("PUT", f"{self._base}/manifests/{self._ref.tag}", data=body,
                                  headers={"Content-Type": OCI_MANIFEST})
            if response.status_code != 201:
                raise self._failed(response, "putting the manifest")

        self.retrying("putting the manifest", put)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def retrying(self, doing: str, attempt: Callable[[], str | None]):
        """Run `attempt` until it does not fail transiently, at most `max_attempts` times.

        Raises:
            ProxyError: the last failure, hub_unavailable naming the attempts when they ran out.
        """
        for number in range(1, self._max_attempts + 1):
            try:
                return attempt()
            except TransientError as err:
                self._after_failure(doing, err, number)
        raise AssertionError("unreachable")

    def _after_failure(self, doing: str, err: TransientError, failed: int) -> None:
        """After `failed` transient failures in a row: give up once they reach `max_attempts`, else say so and
        wait the backoff before the next attempt.

        Raises:
            ProxyError: hub_unavailable naming the attempts, or the proxy stopping during the wait.
        """
        if failed >= self._max_attempts:
            raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"{err.message}; gave up after {failed} attempts") from err
        log.warning("%s to %s/%s failed (%s); attempt %d of %d", doing, self._ref.host, self._ref.repository,
                    err.message, failed + 1, self._max_attempts)
        if self._stop.wait(self._backoff.delay_s(failed, err.retry_after_s)):
            raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"the proxy stopped while {doing}") from err

    def _send_blob(self, blob: Blob, mount_from: str | None, on_sent: Callable[[int], None]) -> str:
        if self._has_blob(blob.digest):
            return "present"
        started = self._start_upload(blob.digest, mount_from)
        if started is None:
            return "mounted"
        location, min_chunk = started
        began = time.monotonic()
        chunk = max(self._chunk_bytes, min_chunk)
        if blob.path is None or blob.size <= chunk:
            self._upload_whole(location, blob, on_sent)
        else:
            self._upload_chunks(location, blob, chunk, on_sent)
        log.info("pushed blob %s (%d bytes) to %s/%s in %.2f s", blob.digest, blob.size, self._ref.host,
                 self._ref.repository, time.monotonic() - began)
        return "uploaded"

    def _has_blob(self, digest: str) -> bool:
        response = self._send("HEAD", f"{self._base}/blobs/{digest}")
        if response.status_code not in (200, 404):
            raise self._failed(response, "HEAD of a blob")
        return response.status_code == 200

    def _start_upload(self, digest: str, from_repository: str | None) -> tuple[str, int] | None:
        """An upload session's URL and the smallest chunk it takes; None when the registry mounted the blob
        from `from_repository` (201; a 202 is a session to upload to after all)."""
        if from_repository and not self._auth.widen(self._ref.host, self._ref.repository, self._push_scope(
                f" repository:{from_repository}:pull")):
            from_repository = None  # no token may read the source repository: upload instead
        query = {"mount": digest, "from": from_repository} if from_repository else None
        response = self._send("POST", f"{self._base}/blobs/uploads/", params=query)
        if response.status_code == 201 and from_repository:
            return None
        if response.status_code != 202 or "Location" not in response.headers:
            raise self._failed(response, "starting an upload")
        try:
            min_chunk = int(response.headers.get(CHUNK_MIN_HEADER) or 0)
        except ValueError:
            min_chunk = 0
        return urljoin(self._base, response.headers["Location"]), min_chunk

    def _upload_whole(self, location: str, blob: Blob, on_sent: Callable[[int], None]) -> None:
        """One PUT of the whole blob, streamed from its file."""
        headers = {"Content-Type": "application/octet-stream"}
        if blob.path is None:
            response = self._send("PUT", location, params={"digest": blob.digest}, data=blob.data, headers=headers)
            on_sent(blob.size)
        else:
            with open(blob.path, "rb") as handle:
                response = self._send("PUT", location, params={"digest": blob.digest},
                                      data=ProgressReader(handle, blob.size, on_sent), headers=headers,
                                      retry_auth=False)  # a streamed body cannot be sent twice
        if response.status_code != 201:
            raise self._failed(response, f"uploading {blob.digest}")

    def _upload_chunks(self, location: str, blob: Blob, chunk: int, on_sent: Callable[..., None]) -> None:
        """PATCH `chunk` bytes at a time (each answer names the next URL), then PUT ?digest= to close.

        A chunk that fails transiently goes on from where the registry's upload status says the session
        stands, in the same session (a 4 GB model is not sent again for one dropped connection), up to
        `max_attempts` failures in a row; a session the registry lost starts the blob again (`retrying`).

        Raises:
            TransientError: the session is lost. ProxyError: hub_unavailable after the attempts.
        """
        assert blob.path is not None
        offset, failures = 0, 0
        with open(blob.path, "rb") as handle:
            while offset < blob.size:
                length = min(chunk, blob.size - offset)
                handle.seek(offset)
                try:
                    response = self._send("PATCH", location, data=ProgressReader(handle, length, on_sent),
                                          headers={"Content-Type": "application/octet-stream",
                                                   "Content-Range": f"{offset}-{offset + length - 1}"},
                                          retry_auth=False)
                    if response.status_code != 202:
                        raise self._failed(response, f"uploading {blob.digest} at byte {offset}")
                except TransientError as err:
                    failures += 1
                    location, offset = self._resume(location, blob, err, failures)
                    on_sent(0, offset)
                    continue
                failures = 0
                location = urljoin(location, response.headers.get("Location", location))
                offset += length
        response = self._send("PUT", location, params={"digest": blob.digest}, data=b"")
        if response.status_code != 201:
            raise self._failed(response, f"closing the upload of {blob.digest}")

    def _resume(self, location: str, blob: Blob, err: TransientError, failures: int) -> tuple[str, int]:
        """After a failed chunk: the session's URL and the offset it stands at (GET of the session: 204 with
        `Range: 0-<last byte>`), asked again while that fails transiently.

        Raises:
            TransientError: the registry lost the session. ProxyError: hub_unavailable after the attempts.
        """
        while True:
            self._after_failure(f"uploading {blob.digest} (resumed in its session)", err, failures)
            try:
                status = self._send("GET", location)
            except TransientError as again:  # the registry could not be reached: ask again
                err, failures = again, failures + 1
                continue
            if status.status_code == 204:
                last = _range_end(status.headers.get("Range"))
                return urljoin(location, status.headers.get("Location", location)), 0 if last is None else last + 1
            if status.status_code == 404:  # retrying() starts the blob again, in a new session
                raise TransientError(f"registry {self._ref.host} lost the upload session of {blob.digest}")
            problem = self._failed(status, f"asking how far the upload of {blob.digest} got")
            if not isinstance(problem, TransientError):
                raise problem
            err, failures = problem, failures + 1

    def _send(self, method: str, url: str, retry_auth: bool = True, **kwargs) -> requests.Response:
        """Raises: ProxyError source_auth_failed, hub_unavailable (TLS); TransientError (connection)."""
        try:
            return self._client.send(method, url, scope=self._push_scope(), answer_challenge=retry_auth, **kwargs)
        except requests.RequestException as err:
            raise TransientError(f"registry {self._ref.host} could not be reached ({type(err).__name__}) "
                                 f"to push {self._ref.canonical}") from err

    def _push_scope(self, extra: str = "") -> str:
        return f"repository:{self._ref.repository}:pull,push{extra}"

    def _failed(self, response: requests.Response, doing: str) -> ProxyError:
        """Our error from the registry's status and error codes (never its text): transient for a 5xx, 429,
        or an upload session the registry lost."""
        codes = error_codes(response)
        if codes & {"DENIED", "UNAUTHORIZED"}:
            return self._auth.refused(self._ref.host, self._ref.repository, response.status_code)
        named = f" ({', '.join(sorted(c for c in codes if isinstance(c, str)))})" if codes else ""
        message = f"registry {self._ref.host} answered HTTP {response.status_code}{named} {doing} for " \
                  f"{self._ref.canonical}"
        if response.status_code >= 500 or response.status_code == 429 or "BLOB_UPLOAD_UNKNOWN" in codes:
            return TransientError(message, parse_retry_after(response.headers.get("Retry-After")))
        return ProxyError(ErrorCode.HUB_UNAVAILABLE, message)


def _range_end(value: str | None) -> int | None:
    """The last byte of an upload status `Range: 0-<last>`; None for none, or for `0-0`, which distribution
    also answers for an empty upload: going on from byte 0 is right for an empty one, and a registry that
    holds exactly one byte refuses that chunk (the push then fails; pushed again, it starts afresh)."""
    first, _, last = (value or "").partition("-")
    if first.strip() != "0" or not last.strip().isdigit() or int(last) == 0:
        return None
    return int(last)
