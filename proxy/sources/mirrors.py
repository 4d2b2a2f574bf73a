"""HF_MIRRORS: Hub-compatible endpoints (peer proxies, mirrors) tried in order before the Hub, per file.

The Hub's listing and sha256 are the truth when it answers; a mirror's file is used only when its sha256
matches. When the Hub gives no listing (it cannot be reached, or the repo is gated or private to a proxy
without HF_TOKEN, which a peer sharing PROXY_API_KEY pulled with its own), the first mirror that lists the
file gives its sha256. Each file carries the later sources as alternates, so a mirror that fails is skipped
for that file (service.py). A mirror that fails (or answers what does not parse, or keeps asking to wait) is
skipped by every pull for MIRROR_COOLDOWN_S (cooldown.py); one that answers 404 merely lacks the repo.
"""
from __future__ import annotations

import dataclasses
import logging

from proxy.errors import ProxyError
from proxy.sources.remote import RemoteFile, RepoFiles, host_of
from proxy.sources.base import Wanted
from proxy.sources.cooldown import MirrorHealth
from proxy.sources.huggingface import HuggingFaceHub

log = logging.getLogger(__name__)


class MirroredHub:
    def __init__(self, mirrors: list[HuggingFaceHub], upstream: HuggingFaceHub, health: MirrorHealth | None = None):
        self.mirrors, self.upstream = mirrors, upstream
        self.host = upstream.host
        self.health = health or MirrorHealth()

    def list_files(self, repo: str, revision: str) -> RepoFiles:
        """The Hub's listing; the first mirror's when the Hub gives none.

        Raises:
            ProxyError: as HuggingFaceHub.list_files, from the Hub when no mirror lists the repo either.
        """
        try:
            return self.upstream.list_files(repo, revision)
        except ProxyError as err:
            if not err.code.hub_lists_nothing:
                raise
            for mirror in self.mirrors:
                listing = self._ask(mirror, lambda m: m.list_files(repo, revision))
                if listing is not None:
                    return listing
            raise

    def resolve(self, wanted: Wanted) -> RepoFiles:
        """The files with each mirror holding it first (same sha256), then the Hub.

        Raises:
            ProxyError: as HuggingFaceHub.resolve, from the Hub when it answers, else from the last mirror.
        """
        try:
            truth = self.upstream.resolve(wanted)
        except ProxyError as err:
            if not err.code.hub_lists_nothing:
                raise
            return self._resolve_from_mirrors(wanted, err)
        pinned = dataclasses.replace(wanted, revision=truth.commit)  # the mirror must hold the Hub's commit
        offers = [self._ask(mirror, lambda m: m.resolve(pinned)) for mirror in self.mirrors]
        files = tuple(_chain([_same_file(offer, f) for offer in offers] + [f]) for f in truth.files)
        return dataclasses.replace(truth, files=files)

    def _resolve_from_mirrors(self, wanted: Wanted, hub_error: ProxyError) -> RepoFiles:
        offers = [offer for offer in (self._ask(m, lambda m: m.resolve(wanted)) for m in self.mirrors) if offer]
        if not offers:
            raise hub_error
        first = offers[0]
        log.warning("the Hub gave no listing of %s (%s); using the sha256 of mirror %s", wanted.repo,
                    hub_error.code, first.files[0].source_host if first.files else "?")
        files = tuple(_chain([f] + [_same_file(offer, f) for offer in offers[1:]]) for f in first.files)
        return dataclasses.replace(first, files=files, source_host=None)


    def _ask(self, mirror: HuggingFaceHub, call) -> RepoFiles | None:
        """A mirror's answer with its host on every file; None when it is cooling down or fails (it is skipped,
        and cools down unless it merely lacks the repo)."""
        host = host_of(mirror.endpoint)
        if self.health.cooling(host):
            return None
        try:
            answer = call(mirror)
        except ProxyError as err:
            log.info("mirror %s skipped: %s", mirror.endpoint, err.code)
            if err.code.mirror_is_broken:
                self.health.failed(host, err.code)
            return None
        return dataclasses.replace(answer, files=tuple(dataclasses.replace(f, source_host=host) for f in answer.files))


def _same_file(offer: RepoFiles | None, wanted: RemoteFile) -> RemoteFile | None:
    """The offer's copy of `wanted`: same path, size and sha256."""
    for remote in offer.files if offer else ():
        if (remote.filename == wanted.filename and remote.sha256 and remote.sha256 == wanted.sha256
                and remote.size == wanted.size):
            return remote
    return None


def _chain(candidates: list[RemoteFile | None]) -> RemoteFile:
    """The first candidate, with the others as its alternates, in order."""
    present = [c for c in candidates if c is not None]
    return dataclasses.replace(present[0], alternates=tuple(present[1:]))
