"""What the pull code needs from a model hub, as values and a protocol."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repo at a resolved commit, with the checks its bytes must pass."""

    filename: str  # path inside the repo
    size: int | None
    sha256: str | None  # the LFS oid; None for files that are not in LFS
    url: str  # where its bytes are fetched (the hub answers it, possibly with a redirect)


@dataclass(frozen=True)
class RepoFiles:
    repo: str
    revision: str  # as asked: branch, tag or commit
    commit: str  # what the hub resolved it to
    files: tuple[RemoteFile, ...]


class Hub(Protocol):
    host: str

    def list_files(self, repo: str, revision: str) -> RepoFiles:
        """Every GGUF file of `repo` at `revision`, with sizes and sha256 where known.

        Raises:
            ProxyError: repo_not_found, revision_not_found, hub_unavailable, hub_token_rejected.
        """

    def check_file(self, repo: str, remote: RemoteFile, commit: str) -> RemoteFile:
        """Ask for one file's metadata, so gating and missing files surface before any byte moves.

        Raises:
            ProxyError: gated_repo, file_not_found, repo_not_found, hub_unavailable, hub_token_rejected.
        """

    def download_headers(self) -> dict[str, str]:
        """Headers for fetching a file's bytes (the token, for the hub's own host only)."""
