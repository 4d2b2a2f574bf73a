"""Every check a pull's bytes pass, in the order they run; a reader audits them here.

1. Before a byte moves, pins: a declared model's pinned commit must be what the source resolved, and a
   pinned digest what the source lists; the pin then goes with its file as the digest to check (apply_pins).
2. While bytes come, the served size: a server offering a file of another size than the source lists is
   refused at its first answer (check_served_size).
3. As bytes land, the digest, in the algorithm the remote file names (digest_hasher: the transfer feeds it).
4. Once all landed, in this order: the size on disk, the digest, the GGUF header (verify_download); the same
   checks decide whether a file already under the final name may be adopted without a download.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from core import naming
from core.gguf_check import GGUFHeader, InvalidGGUF, scan_gguf_header
from proxy.errors import ErrorCode, ProxyError
from proxy.sources.remote import RemoteFile, RepoFiles

if TYPE_CHECKING:
    from proxy.pulls.request import PullRequest

log = logging.getLogger(__name__)
COMMIT_RE = re.compile(r"^[0-9a-fA-F]{40}\Z")


def is_commit(revision: str | None) -> bool:
    return bool(revision and COMMIT_RE.match(revision))


# --- 1. pins -----------------------------------------------------------------------------------------------

def apply_pins(request: PullRequest, resolved: RepoFiles) -> RepoFiles:
    """`resolved` with each pinned file carrying its pin as digest.

    Raises:
        ProxyError: revision_not_found (the source resolved a pinned commit to another one),
            checksum_mismatch (the source serves other bytes than the pin).
    """
    if is_commit(request.revision) and resolved.commit.lower() != request.revision.lower():
        raise ProxyError(ErrorCode.REVISION_NOT_FOUND,
                         f"{request.repo}: the pinned commit {request.revision} resolved to {resolved.commit}")
    if request.pinned_sha256 is None and not request.pinned_parts:
        return resolved
    parts = {naming.basename(name): sha for name, sha in request.pinned_parts}
    files = tuple(_pinned(request, resolved, remote, parts.get(naming.basename(remote.filename))
                          or (request.pinned_sha256 if i == 0 else None))
                  for i, remote in enumerate(resolved.files))
    return dataclasses.replace(resolved, files=files)


def _pinned(request: PullRequest, resolved: RepoFiles, remote: RemoteFile, pin: str | None) -> RemoteFile:
    if pin is None:
        return remote
    if remote.sha256 is not None and remote.sha256.lower() != pin:
        raise ProxyError(ErrorCode.CHECKSUM_MISMATCH, f"{request.repo} at {resolved.commit[:12]} serves "
                         f"{naming.basename(remote.filename)} with sha256 {remote.sha256}, not the pinned {pin}; "
                         "nothing was fetched and what is installed stays")
    return dataclasses.replace(remote, digest=pin, digest_algorithm="sha256")


# --- 2. the served size ------------------------------------------------------------------------------------

def check_served_size(served: int | None, listed: int, how: str) -> None:
    """A server's size for the file (Content-Range's total, or a whole answer's Content-Length), when it
    gives one, must be the size the source lists; `how` says which ("has", "sent").

    Raises:
        ProxyError: checksum_mismatch when the server offers another file than the source listed.
    """
    if served is not None and served != listed:
        raise ProxyError(ErrorCode.CHECKSUM_MISMATCH, f"the server {how} {served} bytes, the source lists {listed}")


# --- 3. the digest -----------------------------------------------------------------------------------------

def digest_hasher(algorithm: str):
    """A fresh hash object of `algorithm` (a remote file's digest_algorithm, hashlib's name for it).

    Raises:
        ValueError: hashlib knows no such algorithm.
    """
    return hashlib.new(algorithm)


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of a whole file, as the transfer would have computed it."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


# --- 4. the download ---------------------------------------------------------------------------------------

def verify_download(path: Path, remote: RemoteFile, digest: str) -> GGUFHeader:
    """Size, then the digest (in the remote file's algorithm), then the GGUF header, in that order; the header.

    Raises:
        ProxyError: checksum_mismatch, invalid_gguf.
    """
    size = path.stat().st_size
    if size != remote.size:
        raise ProxyError(ErrorCode.CHECKSUM_MISMATCH, f"received {size} bytes, the source lists {remote.size}")
    if remote.digest and digest != remote.digest.lower():
        raise ProxyError(ErrorCode.CHECKSUM_MISMATCH,
                         f"{remote.digest_algorithm} of the received bytes differs from the one its source lists")
    try:
        return scan_gguf_header(path)
    except InvalidGGUF as err:
        log.warning("%s is not a valid GGUF file: %s", path.name, err)  # the detail: for the log only
        raise ProxyError(ErrorCode.INVALID_GGUF, f"not a valid GGUF file: {err.client_message}") from err
