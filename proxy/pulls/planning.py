"""Planning a pull: what the source resolves it to, and whether it may go ahead (allowed, safe names, sizes,
no name of another repo's, room on the volume) — everything that can fail before a byte moves, so it fails
as an HTTP status."""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Mapping

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.models_dir.provenance import Provenance
from proxy.pulls.events import Complete
from proxy.pulls.install import Installer, Origin
from proxy.pulls.verify import apply_pins
from proxy.pulls.request import PullRequest, check_filename, check_repo_allowed
from proxy.sources.remote import RemoteFile, RepoFiles
from proxy.sources.base import Source, Wanted
from proxy.models_dir.retention import Retention, allocated_bytes, reclaim_prompt_cache
from proxy.models_dir.staging import reclaim_staging
from proxy.models_dir.store import ModelStore


@dataclass(frozen=True)
class Plan:
    """What a pull will fetch, as the source resolved it, and the provenance records as planning read them."""

    request: PullRequest
    resolved: RepoFiles
    origin: Origin
    records: Mapping[str, Provenance]

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return self.resolved.files

    @property
    def key(self) -> str:
        return naming.basename(self.files[0].filename)

    @property
    def names(self) -> list[str]:
        return [naming.basename(f.filename) for f in self.files]

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)

    def needs_smoke_test(self, records: Mapping[str, Provenance]) -> bool:
        """The pull asks for a smoke test and not every file has passed one since it was installed."""
        return self.request.verify == "load" and not all(
            (record := records.get(name)) and record.smoke_tested for name in self.names)


class Planner:
    def __init__(self, source: Source, store: ModelStore, installer: Installer, allowed_repos: tuple[str, ...] = (),
                 retention: Retention | None = None):
        self.source, self.store, self.installer = source, store, installer
        self.allowed_repos = allowed_repos
        self.retention = retention  # None: only the volume's free space bounds a pull, nothing is evicted
        # Pulls admitted and not ended, by job key: the files they have yet to write. Admission counts what
        # is left of them as used, so pulls admitted at once cannot together exceed the room.
        self._reserved: dict[str, tuple[RemoteFile, ...]] = {}
        self._admission = threading.Lock()

    def plan(self, request: PullRequest) -> Plan:
        """Raises:
            ProxyError: repo_not_allowed, repo_not_found, revision_not_found, file_not_found, gated_repo,
                hub_unavailable, hub_token_rejected, name_conflict, unsafe_filename, not_gguf, and
                checksum_mismatch for a pinned sha256 the source no longer serves.
        """
        check_repo_allowed(request.repo, self.allowed_repos)
        resolved = self.source.resolve(Wanted(request.repo, request.revision, request.filename, request.quant))
        resolved = apply_pins(request, resolved)
        records = self.store.provenance.all()
        for remote in resolved.files:
            check_filename(remote.filename)  # a name the source lists is input too (chosen by quant, say)
            _check_size(remote)
            check_name_free(request, remote, records, self.store)
        origin = Origin(request.repo, resolved.revision, resolved.commit, resolved.source_host or self.source.host,
                        resolved.source, resolved.restricted)
        return Plan(request, resolved, origin, records)

    def cached(self, plan: Plan) -> Complete | None:
        """The `complete` line of a pull with nothing to do: every file installed from this repo, still the
        source's, and smoke-tested if the pull asks for it; None otherwise."""
        if any(not self.installed(plan, plan.records, f) for f in plan.files) or plan.needs_smoke_test(plan.records):
            return None
        return dataclasses.replace(self.complete(plan, plan.records), cached=True)

    def complete(self, plan: Plan, records: Mapping[str, Provenance]) -> Complete:
        """The `complete` line of the plan, its files installed as `records` say."""
        record = records.get(plan.key)
        return Complete(model=plan.request.repo, filename=plan.key, path=str(self.store.final_path(plan.key)),
                        size_mb=round(plan.total_bytes / 1e6, 1), sha256=plan.files[0].sha256,
                        revision=plan.resolved.commit, model_id=naming.model_id(plan.key),
                        files=tuple(plan.names) if len(plan.files) > 1 else (), source=plan.resolved.source,
                        digest=plan.resolved.commit if plan.resolved.source else None,
                        source_host=record.source_host if record is not None else None)

    def installed(self, plan: Plan, records: Mapping[str, Provenance], remote: RemoteFile) -> bool:
        """Installed from this pull's repo and still the source's bytes."""
        return self.installer.matches(records.get(naming.basename(remote.filename)), remote, plan.request.repo)

    def check_space(self, plan: Plan) -> list[str]:
        """Make room for the plan and reserve it until `release(plan.key)`: the staging of dead pulls first,
        then least-recently-used models (with a retention). Returns the files evicted.

        Raises: ProxyError insufficient_storage when nothing evictable is left that would make room.
        """
        missing = tuple(f for f in plan.files
                        if not self.installer.matches(plan.records.get(naming.basename(f.filename)), f))
        needed = sum(f.size - self.installer.staged_bytes(f.filename) for f in missing)
        keep = frozenset(plan.names)  # its own: resumed, not reclaimed; updated, not evicted
        with self._admission:
            self._reserved.pop(plan.key, None)
            evicted = self._make_room(needed, keep)
            self._reserved[plan.key] = missing
        return evicted

    def release(self, key: str) -> None:
        """The pull of `key` ended (or was never started): its bytes are no longer reserved."""
        with self._admission:
            self._reserved.pop(key, None)

    def _make_room(self, needed: int, keep: frozenset[str]) -> list[str]:
        room = self._room()
        if needed > room:
            reclaim_staging(self.store, needed - room, keep=keep)
            room = self._room()
        if needed > room and self.retention is None:  # a retention reclaims the prompt cache itself, first
            reclaim_prompt_cache(self.store.root, needed - room)
            room = self._room()
        evicted = []
        if needed > room and self.retention is not None:
            evicted = self.retention.make_room(needed - room, keep=keep)
            room = self._room()
        if needed > room:
            why = "" if self.retention is None else \
                " (the volume's free space and MODELS_MAX_BYTES), and evicting what is not in use would not do"
            held = f"; pulls running or queued hold {self._reserved_bytes()} more" if self._reserved else ""
            raise ProxyError(ErrorCode.INSUFFICIENT_STORAGE,
                             f"{needed} bytes needed in MODELS_DIR, {max(room, 0)} left{why}{held}")
        return evicted

    def _reserved_bytes(self) -> int:
        """What admitted pulls have yet to write to staging (what they wrote counts as used already)."""
        return sum(max(0, f.size - allocated_bytes(self.installer.staging_path(f.filename)))
                   for files in self._reserved.values() for f in files)

    def _room(self) -> int:
        free = self.retention.room_bytes() if self.retention is not None else self.store.free_bytes()
        return free - self._reserved_bytes()


def check_name_free(request: PullRequest, remote: RemoteFile, records: Mapping[str, Provenance],
                    store: ModelStore) -> None:
    """Raises: ProxyError name_conflict when the file name is installed from another repo and the request
    does not say `replace`."""
    name = naming.basename(remote.filename)
    record = records.get(name)
    if request.replace or record is None or record.repo.lower() == request.repo.lower() \
            or not store.final_path(name).is_file():
        return
    raise ProxyError(ErrorCode.NAME_CONFLICT, f"{name} is installed from {record.repo}; pull with "
                     '"replace": true to replace it with the file of ' + request.repo)


def _check_size(remote: RemoteFile) -> None:
    """Raises: ProxyError hub_unavailable when the source reports no size, or one no file can have."""
    if not isinstance(remote.size, int) or remote.size < 0:
        raise ProxyError(ErrorCode.HUB_UNAVAILABLE, f"the source reported no valid size for {remote.filename} "
                         f"({remote.size!r}); try again later")
