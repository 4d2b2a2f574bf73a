"""Remote files as values every stage of a pull shares (sources make them; planning, the transfer and the
installer read them), and the one rule for which request carries which headers.

A source describes a fetch (URL, and headers such as its credentials scoped to the host they are for); the
transfer follows it without deciding about credentials: every request, redirects included, carries only
the headers scoped to its own host, so a token never reaches a CDN or a registry's blob store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urljoin, urlsplit

import requests

MAX_REDIRECTS = 10


def host_of(url: str) -> str:
    """`host[:port]` of a URL, the key headers are scoped by."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}:{parts.port}" if parts.port else (parts.hostname or "")


@dataclass(frozen=True)
class Fetch:
    url: str
    # host[:port] -> headers sent to that host only. Kept out of repr: they hold credentials.
    scoped_headers: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)

    def headers_for(self, url: str) -> dict[str, str]:
        return dict(self.scoped_headers.get(host_of(url), {}))

    def get(self, session: requests.Session, url: str, headers: Mapping[str, str],
            timeout: tuple[float, float]) -> requests.Response:
        """GET `url` as a stream; redirects are followed here, hop by hop, each with its own host's headers.

        Raises:
            requests.RequestException: requests.TooManyRedirects past MAX_REDIRECTS hops, and transport errors.
        """
        for _ in range(MAX_REDIRECTS + 1):
            response = session.get(url, headers={**headers, **self.headers_for(url)}, stream=True, timeout=timeout,
                                   allow_redirects=False)
            if not response.is_redirect:
                return response
            url = urljoin(url, response.headers["Location"])
            response.close()
        raise requests.TooManyRedirects(f"more than {MAX_REDIRECTS} redirects from {host_of(self.url)}")


@dataclass(frozen=True)
class RemoteFile:
    """One file at a resolved revision, with the checks its bytes must pass and how to fetch them."""

    filename: str  # path inside the repo
    size: int | None
    digest: str | None  # hex digest of the bytes; None when the source gives none (a Hub file not in LFS)
    fetch: Fetch
    digest_algorithm: str = "sha256"
    source_host: str | None = None  # where these bytes come from, when not the pull's source (a mirror)
    # The same file from the next sources in order (HF_MIRRORS, then the Hub), tried when this one fails.
    alternates: tuple["RemoteFile", ...] = ()

    @property
    def sha256(self) -> str | None:
        return self.digest if self.digest_algorithm == "sha256" else None


@dataclass(frozen=True)
class RepoFiles:
    repo: str
    revision: str  # as asked: branch, tag or commit
    commit: str  # what the source resolved it to (a registry's: the manifest digest)
    files: tuple[RemoteFile, ...]
    source: str | None = None  # a registry source's canonical reference; None for the Hub
    source_host: str | None = None  # where the files come from, when not the source's own `host`
    restricted: bool = False  # read with a token from a private or gated repo
