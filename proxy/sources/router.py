"""One Source for the pipeline over several, chosen by the scheme of what a pull names: a registry from scheme to
Source, the Hub's (HUB_SCHEME) for names without one. Adding a source is its module and one `register` line
where the app sets its sources up (proxy/app.py, build_services)."""
from __future__ import annotations

from typing import Callable, Mapping

from core.naming import HUB_SCHEME, scheme_of
from proxy.errors import ErrorCode, ProxyError
from proxy.sources.base import Source, Wanted
from proxy.sources.reference import CANONICAL
from proxy.sources.remote import RepoFiles


class SourceRouter:
    def __init__(self, sources: Mapping[str, Source]):
        self._by_scheme = dict(sources)

    def register(self, scheme: str, source: Source, canonical: Callable[[str], str] | None = None) -> None:
        """Pulls of `scheme://...` go to `source`; `canonical(reference)` parses such a reference to the form
        pulls, provenance and ALLOWED_REPOS use (raising ProxyError invalid_repo_id), where the scheme is new."""
        self._by_scheme[scheme] = source
        if canonical is not None:
            CANONICAL[scheme] = canonical

    @property
    def host(self) -> str:
        """Where Hub files come from; another source's files carry their host in RepoFiles.source_host."""
        return self._by_scheme[HUB_SCHEME].host

    def for_scheme(self, scheme: str) -> Source:
        """Raises: ProxyError unsupported_source when no source is registered for `scheme`."""
        try:
            return self._by_scheme[scheme]
        except KeyError:
            raise ProxyError(ErrorCode.UNSUPPORTED_SOURCE, f"no source for {scheme}:// references here") from None

    def source_for(self, repo: str) -> Source:
        return self.for_scheme(scheme_of(repo) or HUB_SCHEME)

    def list_files(self, repo: str, revision: str) -> RepoFiles:
        return self.source_for(repo).list_files(repo, revision)

    def resolve(self, wanted: Wanted) -> RepoFiles:
        return self.source_for(wanted.repo).resolve(wanted)
