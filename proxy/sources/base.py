"""What a pull needs from a source of models (the Hub, Ollama and OCI registries), as values and
a protocol. A source resolves what was asked to remote files and owns its auth; jobs, the transfer, the
checks and the install work on these values alone."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from proxy.sources.remote import RemoteFile, RepoFiles

__all__ = ["RemoteFile", "RepoFiles", "Source", "Wanted"]


@dataclass(frozen=True)
class Wanted:
    """What a pull asks a source for."""

    repo: str
    revision: str
    filename: str | None = None
    quant: str | None = None


class Source(Protocol):
    host: str  # recorded in provenance as where installed files came from

    def list_files(self, repo: str, revision: str) -> RepoFiles:
        """Every GGUF file of `repo` at `revision`, with sizes and digests where known.

        Raises:
            ProxyError: repo_not_found, revision_not_found, hub_unavailable, hub_token_rejected.
        """

    def resolve(self, wanted: Wanted) -> RepoFiles:
        """The files a pull takes (a split set's every part), each checked with the source so that gating
        and missing files surface before any byte moves, with the fetch that gets its bytes.

        Raises:
            ProxyError: repo_not_found, revision_not_found, file_not_found, gated_repo, hub_unavailable,
                hub_token_rejected.
        """
