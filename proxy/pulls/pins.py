"""Pins of a declared model checked against what the source serves, before a byte is fetched; the pinned
digest then goes with each file, so the transfer checks the bytes against it too."""
from __future__ import annotations

import dataclasses
import re

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.sources.remote import RemoteFile, RepoFiles
from proxy.pulls.request import PullRequest

COMMIT_RE = re.compile(r"^[0-9a-fA-F]{40}\Z")


def is_commit(revision: str | None) -> bool:
    return bool(revision and COMMIT_RE.match(revision))


def apply_pins(request: PullRequest, resolved: RepoFiles) -> RepoFiles:
    """`resolved` with each pinned file carrying its pin as digest.

    Raises:
        ProxyError: revision_not_found (the source resolved a pinned commit to another one),
            checksum_mismatch (the source serves other bytes than the pin).
    """
    if is_commit(request.revision) and resolved.commit.lower() != request.revision.lower():
        raise ProxyError(ErrorCode.REVISION_NOT_FOUND, f"{request.repo}: the pinned commit {request.revision} resolved "
                         f"to {resolved.commit}")
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
