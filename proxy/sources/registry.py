"""Ollama and OCI distribution registries as a source: a reference resolves to its manifest's GGUF layers,
each a blob fetched by the shared transfer and checked against its sha256 digest (docs/api.md, Sources)."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from typing import Mapping

import requests

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.sources.remote import Fetch, RemoteFile, RepoFiles
from proxy.retry import Backoff
from proxy.sources.base import Wanted
from proxy.sources.bounded import MANIFEST_MAX_BYTES, parse_json, read_capped
from proxy.sources.reference import RegistryRef, is_digest, parse_reference
from proxy.sources.registry_auth import Credentials, LiveHeaders, RegistryAuth
from proxy.sources.registry_http import RegistryClient, error_codes
from proxy.sources.select import select_files

log = logging.getLogger(__name__)
MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json")
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
# An index entry's artifactType that marks a model: Docker Model Runner's config, CNCF ModelPack's.
MODEL_ARTIFACT_TYPES = ("application/vnd.docker.ai.model.config.v0.1+json",
                        "application/vnd.cncf.model.manifest.v1+json", "application/vnd.cncf.model.config.v1+json")
INDEX_ENTRIES_MAX = 16  # manifests of one index asked for at most
GGUF_LAYER_TYPES = ("application/vnd.ollama.image.model", "application/vnd.docker.ai.gguf.v3",
                    "application/vnd.cncf.model.weight.v1.gguf")
NAME_ANNOTATIONS = ("org.opencontainers.image.title", "org.cncf.model.filepath")


class RegistrySource:
    """`ollama://` and `oci://` references (their canonical form is the repo a pull names)."""

    host = ""  # per pull: RepoFiles carry the registry; see resolve()

    def __init__(self, credentials: Mapping[str, Credentials] | None = None, insecure: tuple[str, ...] = (),
                 timeout_s: float = 20.0, max_retries: int = 6, backoff: Backoff | None = None):
        self._insecure = frozenset(h.lower() for h in insecure)
        self._timeout_s, self._max_retries = timeout_s, max(1, max_retries)
        self._backoff = backoff or Backoff()
        self._session = requests.Session()
        self.auth = RegistryAuth(credentials or {}, self._session, timeout_s)

    def list_files(self, repo: str, revision: str) -> RepoFiles:
        """The GGUF layers of the manifest `repo` (a reference) names; `revision` is unused (the tag is in it).

        Raises:
            ProxyError: invalid_repo_id, repo_not_found, revision_not_found, source_auth_failed, hub_unavailable.
        """
        ref = parse_reference(repo)
        body, digest = self._manifest(ref)
        return RepoFiles(ref.canonical, ref.reference, digest, self._layers(ref, body), ref.canonical, ref.host)

    def resolve(self, wanted: Wanted) -> RepoFiles:
        """Every GGUF layer of the manifest (several: a split set), or the one named.

        Raises:
            ProxyError: what list_files raises, and file_not_found.
        """
        listing = self.list_files(wanted.repo, wanted.revision)
        if not listing.files:
            raise ProxyError(ErrorCode.FILE_NOT_FOUND, f"{listing.repo} has no GGUF layer (media types "
                             f"{', '.join(GGUF_LAYER_TYPES)})")
        if wanted.filename is None and wanted.quant is None:
            return listing
        return dataclasses.replace(listing, files=select_files(listing, wanted.filename, wanted.quant))

    @property
    def session(self) -> requests.Session:
        """The connection pool its requests share (a push uses it too, with the same auth)."""
        return self._session

    @property
    def timeout_s(self) -> float:
        return self._timeout_s

    def base_url(self, ref: RegistryRef) -> str:
        scheme = "http" if ref.host in self._insecure else "https"
        return f"{scheme}://{ref.host}/v2/{ref.repository}"

    def _manifest(self, ref: RegistryRef) -> tuple[dict, str]:
        """The model's manifest as JSON, and the digest of what the reference names: that manifest's, or for
        an image index (or Docker manifest list) the index's, whose model entry is followed.

        Raises:
            ProxyError: repo_not_found, revision_not_found, source_auth_failed, hub_unavailable, file_not_found
                (neither a manifest nor an index with a model), checksum_mismatch.
        """
        body, digest = self._fetch_manifest(ref, ref.reference, (*MANIFEST_TYPES, *INDEX_TYPES), ref.digest)
        if body.get("mediaType") in INDEX_TYPES or ("manifests" in body and "layers" not in body):
            return self._model_of_index(ref, body), digest
        return body, digest

    def _model_of_index(self, ref: RegistryRef, index: dict) -> dict:
        """The manifest of the index's model: entries whose artifactType marks a model first, then the others;
        the first with a GGUF layer."""
        entries = [entry for entry in index.get("manifests") or [] if isinstance(entry, dict)
                   and entry.get("mediaType", MANIFEST_TYPES[0]) in MANIFEST_TYPES
                   and is_digest(entry.get("digest"))]
        entries.sort(key=lambda entry: entry.get("artifactType") not in MODEL_ARTIFACT_TYPES)  # stable
        for entry in entries[:INDEX_ENTRIES_MAX]:
            body, _ = self._fetch_manifest(ref, entry["digest"], MANIFEST_TYPES, entry["digest"])
            if _gguf_layers(body):
                return body
        raise ProxyError(ErrorCode.FILE_NOT_FOUND, f"{ref.canonical} is an image index without a model manifest (none "
                         f"of its {len(entries)} manifests has a GGUF layer of media types "
                         f"{', '.join(GGUF_LAYER_TYPES)})")

    def _fetch_manifest(self, ref: RegistryRef, reference: str, accept: tuple[str, ...],
                        expected_digest: str | None) -> tuple[dict, str]:
        """One manifest (or index) as JSON, and the digest of the bytes received.

        Raises:
            ProxyError: repo_not_found, revision_not_found, source_auth_failed, hub_unavailable,
                checksum_mismatch (not the `expected_digest`), file_not_found (not a manifest).
        """
        url = f"{self.base_url(ref)}/manifests/{reference}"
        response = self._get(ref, url, {"Accept": ", ".join(accept)})
        media_type = response.headers.get("Content-Type", "unknown")
        content = read_capped(response, MANIFEST_MAX_BYTES, f"the manifest {reference} of {ref.canonical}")
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        if expected_digest and digest != expected_digest:
            raise ProxyError(ErrorCode.CHECKSUM_MISMATCH, f"the manifest {reference} of {ref.canonical} does not match "
                             "its digest")
        body = parse_json(content)
        if not isinstance(body, dict) or not isinstance(body.get("layers", []), list):
            raise ProxyError(ErrorCode.FILE_NOT_FOUND, f"{ref.canonical} is not an image manifest (media type "
                             f"{media_type})")
        return body, digest

    def _layers(self, ref: RegistryRef, manifest: dict) -> tuple[RemoteFile, ...]:
        layers = _gguf_layers(manifest)
        names = installed_names(ref, layers)
        auth = LiveHeaders(self.auth, ref.host, ref.repository)
        files = []
        for layer, name in zip(layers, names):
            algorithm, _, hexdigest = str(layer.get("digest", "")).partition(":")
            if algorithm != "sha256" or len(hexdigest) != 64:
                raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"{ref.canonical} has a layer without a sha256 digest")
            size = layer.get("size")
            files.append(RemoteFile(name, size if isinstance(size, int) else None, hexdigest.lower(),
                                    Fetch(f"{self.base_url(ref)}/blobs/sha256:{hexdigest}", auth)))
        return tuple(files)

    def _get(self, ref: RegistryRef, url: str, headers: dict[str, str]) -> requests.Response:
        """GET with the registry's auth (answering one challenge), retrying what is worth retrying.

        Raises:
            ProxyError: repo_not_found, revision_not_found, source_auth_failed, hub_unavailable.
        """
        stop = threading.Event()
        # A registry that never answers is not asked again and again: retries end once the first attempt's
        # timeout has passed (with PULL_MAX_RETRIES of them, 2 minutes and more before any status).
        deadline = time.monotonic() + self._timeout_s
        for attempt in range(1, self._max_retries + 1):
            try:
                response = self._authorized_get(ref, url, headers)
            except requests.RequestException as err:
                failure: ProxyError | None = ProxyError(
                    ErrorCode.HUB_UNAVAILABLE, f"registry {ref.host} could not be reached ({type(err).__name__}, "
                    f"{attempt} attempts) for {ref.canonical}; check the host, INSECURE_REGISTRIES and the network")
            else:
                if response.ok:
                    return response
                failure = self._error(ref, response, attempt)
                if failure.code == ErrorCode.REVISION_NOT_FOUND and not self._has_repository(ref):
                    failure = _no_repository(ref)
                if response.status_code < 500 and response.status_code != 429:
                    raise failure
            if attempt == self._max_retries or time.monotonic() >= deadline:
                raise failure
            log.warning("asking %s for %s failed; retrying, attempt %d of %d", ref.host, ref.canonical,
                        attempt + 1, self._max_retries)
            stop.wait(self._backoff.delay_s(attempt, None))
        raise AssertionError("unreachable")

    def _authorized_get(self, ref: RegistryRef, url: str, headers: dict[str, str]) -> requests.Response:
        """Raises: ProxyError source_auth_failed, hub_unavailable (TLS); requests.RequestException."""
        # stream=True: the body is read by the caller, through a size cap (proxy/sources/bounded.py).
        return RegistryClient(self.auth, self._session, ref, self._timeout_s).send("GET", url, headers=headers,
                                                                                   stream=True)

    def _has_repository(self, ref: RegistryRef) -> bool:
        """Whether the registry knows the repository: distribution answers MANIFEST_UNKNOWN for a manifest of
        an unknown repository too, and NAME_UNKNOWN only for its tag list."""
        try:
            response = self._authorized_get(ref, f"{self.base_url(ref)}/tags/list?n=1", {})
        except (requests.RequestException, ProxyError):
            return True  # cannot tell: keep what the manifest said
        with response:
            return response.status_code != 404 or error_codes(response) != {"NAME_UNKNOWN"}

    @staticmethod
    def _error(ref: RegistryRef, response: requests.Response, attempt: int) -> ProxyError:
        """Our code from the registry's status and its error codes (the distribution spec's), not its text."""
        codes = error_codes(response)
        if "NAME_UNKNOWN" in codes or (response.status_code == 404 and "MANIFEST_UNKNOWN" not in codes):
            return _no_repository(ref)
        if "MANIFEST_UNKNOWN" in codes:
            return ProxyError(ErrorCode.REVISION_NOT_FOUND, f"registry {ref.host} has no tag or digest {ref.reference} "
                              f"in {ref.repository}")
        return ProxyError(ErrorCode.HUB_UNAVAILABLE, f"registry {ref.host} answered HTTP {response.status_code} for "
                          f"{ref.canonical} ({attempt} attempts)")


def _gguf_layers(manifest: dict) -> list[dict]:
    return [layer for layer in manifest.get("layers") or []
            if isinstance(layer, dict) and layer.get("mediaType") in GGUF_LAYER_TYPES]


def installed_names(ref: RegistryRef, layers: list[dict]) -> list[str]:
    """Each GGUF layer's installed file name: its title annotation when a safe .gguf base name, else
    `<name>-<tag>.gguf` (a split set's parts `<stem>-0000i-of-0000n.gguf`)."""
    annotated = [_annotated_name(layer) for layer in layers]
    if all(annotated) and len(set(annotated)) == len(annotated):
        return annotated
    if len(layers) == 1:
        return [f"{ref.name_tag}.gguf"]
    count = len(layers)
    return [f"{ref.name_tag}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def _annotated_name(layer: dict) -> str | None:
    annotations = layer.get("annotations")
    if not isinstance(annotations, dict):
        return None
    for key in NAME_ANNOTATIONS:
        name = annotations.get(key)
        if isinstance(name, str) and naming.is_safe_name(name) and naming.is_gguf(name):
            return name
    return None


def _no_repository(ref: RegistryRef) -> ProxyError:
    return ProxyError(ErrorCode.REPO_NOT_FOUND, f"registry {ref.host} has no repository {ref.repository} "
                      f"(asked for {ref.canonical})")
