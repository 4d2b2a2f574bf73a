"""The distribution API's push side: HEAD a blob, mount it from another repository, upload it monolithically
(POST, then PUT with ?digest= streaming the file from disk), PUT the manifest. Auth is the pull's
(proxy/sources/registry_auth.py), with the `pull,push` scope a Bearer token needs for writing."""
from __future__ import annotations

import hashlib
import logging
import time
from typing import Callable
from urllib.parse import urljoin, urlsplit

import requests

from proxy.errors import ProxyError
from proxy.pushes.artifact import OCI_MANIFEST, Blob
from proxy.sources.reference import RegistryRef
from proxy.sources.registry_auth import RegistryAuth, parse_challenge

log = logging.getLogger(__name__)
READ_BYTES = 1024 * 1024


class ProgressReader:
    """A file read by requests as a body of known length, reporting each chunk read."""

    def __init__(self, handle, size: int, on_read: Callable[[int], None]):
        self._handle, self._size, self._on_read = handle, size, on_read

    def __len__(self) -> int:
        return self._size

    def read(self, amount: int = -1) -> bytes:
        chunk = self._handle.read(READ_BYTES if amount is None or amount < 0 else max(amount, READ_BYTES))
        if chunk:
            self._on_read(len(chunk))
        return chunk


class RegistryUploader:
    """Push requests to one registry repository (`ref`), each answering the registry's challenges once."""

    def __init__(self, auth: RegistryAuth, session: requests.Session, base_url: str, ref: RegistryRef,
                 timeout_s: float):
        self._auth, self._session, self._base, self._ref, self._timeout_s = auth, session, base_url, ref, timeout_s

    def has_blob(self, digest: str) -> bool:
        """Raises: ProxyError source_auth_failed, hub_unavailable."""
        response = self._send("HEAD", f"{self._base}/blobs/{digest}")
        if response.status_code not in (200, 404):
            raise self._failed(response, "HEAD of a blob")
        return response.status_code == 200

    def start_upload(self, digest: str, from_repository: str | None) -> str | None:
        """An upload session's URL; None when the registry mounted the blob from `from_repository`.

        Raises:
            ProxyError: source_auth_failed, hub_unavailable.
        """
        query = {"mount": digest, "from": from_repository} if from_repository else None
        response = self._send("POST", f"{self._base}/blobs/uploads/", params=query)
        if response.status_code == 201 and from_repository:
            return None
        if response.status_code != 202 or "Location" not in response.headers:
            raise self._failed(response, "starting an upload")
        return urljoin(self._base, response.headers["Location"])

    def upload(self, location: str, blob: Blob, on_sent: Callable[[int], None]) -> None:
        """PUT the whole blob at the session `location`, streamed from its file.

        Raises:
            ProxyError: source_auth_failed, hub_unavailable.
        """
        started = time.monotonic()
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
        log.info("pushed blob %s (%d bytes) to %s/%s in %.2f s", blob.digest, blob.size, self._ref.host,
                 self._ref.repository, time.monotonic() - started)

    def put_manifest(self, body: bytes) -> str:
        """PUT the manifest under the tag; its digest.

        Raises:
            ProxyError: source_auth_failed, hub_unavailable.
        """
        response = self._send("PUT", f"{self._base}/manifests/{self._ref.tag}", data=body,
                              headers={"Content-Type": OCI_MANIFEST})
        if response.status_code != 201:
            raise self._failed(response, "putting the manifest")
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def _send(self, method: str, url: str, retry_auth: bool = True, **kwargs) -> requests.Response:
        """Raises: ProxyError source_auth_failed, hub_unavailable."""
        host, repository = self._ref.host, self._ref.repository
        for attempt in (1, 2):
            # Credentials go to the registry's own host only, never to where an upload Location points elsewhere.
            auth = self._auth.header(host, repository) if urlsplit(url).netloc.lower() == host else None
            headers = {**kwargs.pop("headers", {}), **({"Authorization": auth} if auth else {})}
            try:
                response = self._session.request(method, url, headers=headers, timeout=self._timeout_s, **kwargs)
            except requests.exceptions.SSLError as err:
                raise ProxyError("hub_unavailable", f"registry {host} could not be reached over HTTPS (TLS "
                                 "failed); a registry that serves plain HTTP must be listed in INSECURE_REGISTRIES"
                                 ) from err
            except requests.RequestException as err:
                raise ProxyError("hub_unavailable", f"registry {host} could not be reached ({type(err).__name__}) "
                                 f"to push {self._ref.canonical}") from err
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if response.status_code == 401 and "WWW-Authenticate" in response.headers and attempt == 1 \
                    and retry_auth:
                scheme, params = parse_challenge(response.headers["WWW-Authenticate"])
                self._auth.answer(host, repository, scheme, {**params, "scope": f"repository:{repository}:pull,push"})
                continue
            break
        if response.status_code in (401, 403):
            raise self._auth.refused(host, repository, response.status_code)
        return response

    def _failed(self, response: requests.Response, doing: str) -> ProxyError:
        """Our code from the registry's status and error codes (never its text)."""
        codes = _error_codes(response)
        if codes & {"DENIED", "UNAUTHORIZED"}:
            return self._auth.refused(self._ref.host, self._ref.repository, response.status_code)
        named = f" ({', '.join(sorted(c for c in codes if isinstance(c, str)))})" if codes else ""
        return ProxyError("hub_unavailable", f"registry {self._ref.host} answered HTTP {response.status_code}"
                          f"{named} {doing} for {self._ref.canonical}")


def _error_codes(response: requests.Response) -> set:
    try:
        return {e.get("code") for e in response.json().get("errors", [])}
    except (ValueError, AttributeError, TypeError):
        return set()
