"""One Source for the pipeline over several: registry references go to the registry source, everything
else to the Hub."""
from __future__ import annotations

from proxy.sources.remote import RepoFiles
from proxy.sources.base import Source, Wanted
from proxy.sources.reference import is_registry_reference


class SourceRouter:
    def __init__(self, hub: Source, registry: Source):
        self.hub, self.registry = hub, registry

    @property
    def host(self) -> str:
        """Where Hub files come from; a registry's files carry their host in RepoFiles.source_host."""
        return self.hub.host

    def source_for(self, repo: str) -> Source:
        return self.registry if is_registry_reference(repo) else self.hub

    def list_files(self, repo: str, revision: str) -> RepoFiles:
        return self.source_for(repo).list_files(repo, revision)

    def resolve(self, wanted: Wanted) -> RepoFiles:
        return self.source_for(wanted.repo).resolve(wanted)
