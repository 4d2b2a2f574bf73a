"""A user's own GGUF into MODELS_DIR as Ollama's clients send it: the file uploaded as a blob
(`POST /api/blobs/sha256:<hex>`, checked against its digest while it streams in), then `POST /api/create` with
`files` naming it, installed with a pull's checks (size, sha256, GGUF header), its provenance and an atomic move,
and named as asked (proxy/ollama/aliases.py). `/api/copy` adds a name (docs/api.md, Ollama-compatible API)."""
from __future__ import annotations

import datetime
import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import IO

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.models_dir.details import details_of
from proxy.models_dir.provenance import Provenance
from proxy.models_dir.staging import PARTIAL_SUFFIX, STAGING
from proxy.models_dir.store import ModelStore
from proxy.ollama.aliases import AliasStore, full_name
from proxy.ollama.names import resolve_ollama_name
from proxy.pulls.verify import file_digest, verify_download
from proxy.sources.remote import RemoteFile

DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
CHUNK_BYTES = 1 << 20
CREATED_BY = "ollama-create"  # the provenance's source_host of a model made by /api/create
# Ollama's create fields that change what a model is (a template, system prompt, parameters, quantization,
# adapters, messages): the backend serves a GGUF as it is, so a create that asks for them is refused.
UNSUPPORTED = ("quantize", "adapters", "template", "system", "parameters", "messages")


def blob_digest(text: str) -> str:
    """The hex digest of `sha256:<hex>` (or `sha256-<hex>`, as Ollama names blob files).

    Raises: ProxyError invalid_request.
    """
    match = DIGEST.match(text or "")
    if match is None:
        raise ProxyError(ErrorCode.INVALID_REQUEST, f"invalid digest {text!r}: expected sha256:<64 hex digits>")
    return match.group(1)


class Blobs:
    """Uploaded blobs, in MODELS_DIR's staging (swept after a day unused, as any staging) until a create
    installs one."""

    def __init__(self, store: ModelStore):
        self.store = store

    def path(self, digest: str) -> Path:
        return self.store.child(self.store.root / STAGING, f"ollama-blob-sha256-{digest}{PARTIAL_SUFFIX}")

    def has(self, digest: str) -> bool:
        """Whether the blob was uploaded, or an installed model is those bytes."""
        return self.path(digest).is_file() or self.installed_as(digest) is not None

    def installed_as(self, digest: str) -> str | None:
        """The id of an installed model whose recorded sha256 is `digest`, whole on disk."""
        for entry in self.store.installed_records():
            if entry.get("sha256") == digest and self.store.installed_size(entry["filename"]) == entry.get("size"):
                return entry["id"]
        return None

    def receive(self, digest: str, body: IO[bytes], length: int | None) -> None:
        """Stream `body` into the blob, hashing it; kept only when its sha256 is `digest`.

        Raises:
            ProxyError: insufficient_storage (longer than the free space), checksum_mismatch (400: other bytes).
        """
        if length is not None and length > self.store.free_bytes():
            raise ProxyError(ErrorCode.INSUFFICIENT_STORAGE, f"the upload is {length} bytes and MODELS_DIR has "
                             f"{self.store.free_bytes()} free")
        final = self.path(digest)
        temporary = final.with_name(f"{final.name}.{uuid.uuid4().hex[:8]}.upload")
        hasher = hashlib.sha256()
        try:
            with open(temporary, "wb") as out:
                while chunk := body.read(CHUNK_BYTES):
                    hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if hasher.hexdigest() != digest:
                raise ProxyError(ErrorCode.CHECKSUM_MISMATCH, f"digest mismatch: the bytes sent are sha256:"
                                 f"{hasher.hexdigest()}, not sha256:{digest}", status=400)
            os.replace(temporary, final)
        finally:
            temporary.unlink(missing_ok=True)


def create_model(store: ModelStore, body: dict) -> str:
    """Carry out `/api/create`: install the GGUF blob `files` names under the model's name, or name the model
    `from` names; the full name made.

    Raises:
        ProxyError: invalid_request (fields, a missing blob), model_not_found (`from`), checksum_mismatch,
            invalid_gguf (the blob is not those bytes, or not a GGUF file), name_conflict, model_busy.
    """
    name = body.get("model") or body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ProxyError(ErrorCode.INVALID_REQUEST, "model is required")
    asked = [field for field in UNSUPPORTED if body.get(field)]
    if asked:
        raise ProxyError(ErrorCode.INVALID_REQUEST, f"{', '.join(asked)} cannot be set here: the sidecar serves a "
                         "GGUF file as it is (its own template and the request's options)")
    files, source = body.get("files"), body.get("from")
    if not files:
        if not isinstance(source, str) or not source:
            raise ProxyError(ErrorCode.INVALID_REQUEST, "neither 'from' or 'files' was specified")
        return AliasStore(store.root).put(name, resolve_ollama_name(store, source)[0])
    return AliasStore(store.root).put(name, _install_blob(store, full_name(name), files))


def _install_blob(store: ModelStore, name: str, files: object) -> str:
    """The id of the model the one GGUF blob of `files` is, installed under a file name made from `name`."""
    if not isinstance(files, dict) or len(files) != 1:
        raise ProxyError(ErrorCode.INVALID_REQUEST, 'files must name one GGUF file: {"model.gguf": "sha256:..."}')
    original, digest = next(iter(files.items()))
    digest = blob_digest(digest if isinstance(digest, str) else "")
    if not naming.is_gguf(str(original)):
        raise ProxyError(ErrorCode.NOT_GGUF, f"{original!r} is not a .gguf file")
    blobs = Blobs(store)
    installed = blobs.installed_as(digest)
    if installed is not None:  # those bytes are installed already: one more name for them
        return installed
    blob = blobs.path(digest)
    if not blob.is_file():
        raise ProxyError(ErrorCode.INVALID_REQUEST, f"blob sha256:{digest} was not uploaded: POST it to "
                         f"/api/blobs/sha256:{digest} first")
    filename = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") + ".gguf"
    with store.lock(filename, blocking=False) as acquired:
        if not acquired:
            raise ProxyError(ErrorCode.MODEL_BUSY, f"{filename} is being pulled, pushed or deleted; try again")
        if store.installed_size(filename) is not None:
            raise ProxyError(ErrorCode.NAME_CONFLICT, f"{filename} is installed already with other bytes; "
                             "delete it or choose another name")
        size = blob.stat().st_size
        remote = RemoteFile(filename=str(original), size=size, digest=digest, fetch=None)  # type: ignore[arg-type]
        header = verify_download(blob, remote, file_digest(blob, "sha256"))
        store.install(blob, Provenance(
            filename=filename, repo="", repo_path=str(original), revision="", commit="", size=size, sha256=digest,
            source_host=CREATED_BY, details=details_of(header),
            pulled_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")))
    return naming.model_id(filename)
