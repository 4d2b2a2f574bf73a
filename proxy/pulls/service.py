"""A pull from request to installed model: resolve on the hub, then one job per file (set)."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from proxy import naming
from proxy.errors import ProxyError, disk_full_is_insufficient_storage
from proxy.gguf_check import InvalidGGUF, scan_gguf_header
from proxy.sources.base import RemoteFile, RepoFiles, Source, Wanted
from proxy.provenance import Provenance
from proxy.pulls.events import Complete, Queued, SmokeTesting, Verifying
from proxy.pulls.jobs import PullJob, PullRegistry
from proxy.pulls.progress import ProgressReporter
from proxy.pulls.request import PullRequest, check_filename, check_repo_allowed
from proxy.pulls.transfer import Transfer, TransferCancelled, TransferOptions
from proxy.staging import reclaim_staging
from proxy.store import ModelStore

log = logging.getLogger(__name__)
LOCK_POLL_S = 0.5


@dataclass(frozen=True)
class Plan:
    """What a pull will fetch, as the hub resolved it."""

    request: PullRequest
    listing: RepoFiles
    files: tuple[RemoteFile, ...]

    @property
    def key(self) -> str:
        return naming.basename(self.files[0].filename)

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


class PullService:
    def __init__(self, hub: Source, store: ModelStore, registry: PullRegistry, options: TransferOptions,
                 allowed_repos: tuple[str, ...] = (), progress_interval_s: float = 0.5, smoke_test=None,
                 count_bytes: Callable[[int], None] = lambda count: None,
                 on_end: Callable[[PullJob], None] = lambda job: None):
        self.hub, self.store, self.registry, self.options = hub, store, registry, options
        self.allowed_repos = allowed_repos
        self.progress_interval_s = progress_interval_s
        self.smoke_test = smoke_test  # callable(model_id) raising ProxyError; None: no backend to ask
        self.count_bytes = count_bytes
        self.on_end = on_end

    def plan(self, request: PullRequest) -> Plan:
        """Everything that can fail before a byte moves, so it fails as an HTTP status.

        Raises:
            ProxyError: repo_not_allowed, repo_not_found, revision_not_found, file_not_found, gated_repo,
                hub_unavailable, hub_token_rejected, name_conflict, unsafe_filename.
        """
        check_repo_allowed(request.repo, self.allowed_repos)
        listing = self.hub.resolve(Wanted(request.repo, request.revision, request.filename, request.quant))
        for remote in listing.files:
            check_filename(remote.filename)  # a name the Hub lists is input too (chosen by quant, say)
            _check_size(remote)
            self._check_name_free(request, remote)
        return Plan(request, listing, listing.files)

    def cached(self, plan: Plan) -> Complete | None:
        """The `complete` answer when every file is installed from this repo, still matches the hub, and
        was smoke-tested if the pull asks for it."""
        if all(self._installed(plan, f) for f in plan.files) and not self._needs_smoke_test(plan):
            return dataclasses.replace(self._complete_event(plan), cached=True)
        return None

    def submit(self, plan: Plan) -> tuple[PullJob, bool]:
        """Raises: ProxyError insufficient_storage, model_busy, pull_queue_full."""
        existing = self.registry.active(plan.key)
        if existing is None:
            self._check_space(plan)

        def make() -> PullJob:
            job = PullJob(plan.key, plan.request.repo, plan.key, lambda job: self._run_remembered(job, plan),
                          on_end=self.on_end)
            self._save_note(plan)  # on acceptance: a queued pull survives a restart as a running one does
            job.publish(job.starting_event())
            return job

        return self.registry.submit(plan.key, plan.request.repo, make)

    def _check_space(self, plan: Plan) -> None:
        """Raises: ProxyError insufficient_storage when even the staging of dead pulls leaves no room."""
        needed = sum(f.size - self.store.staged_bytes(f.filename) for f in plan.files
                     if not self.store.verified_record(f.filename, f.size, f.sha256))
        free = self.store.free_bytes()
        if needed > free:
            own = frozenset(naming.basename(f.filename) for f in plan.files)  # resumed below, not reclaimed
            reclaim_staging(self.store, needed - free, keep=own)
            free = self.store.free_bytes()
        if needed > free:
            raise ProxyError("insufficient_storage", f"{needed} bytes needed in MODELS_DIR, {free} free")

    def _save_note(self, plan: Plan) -> None:
        """A note in MODELS_DIR that outlives the process until the pull has ended (see proxy/preload.py).

        Raises:
            ProxyError: insufficient_storage (the volume is full).
        """
        request = plan.request
        with disk_full_is_insufficient_storage():
            self.store.save_intent(request.repo, plan.key, {
                "model": request.repo, "filename": plan.files[0].filename, "revision": request.revision,
                "verify": request.verify, "replace": request.replace})

    def _run_remembered(self, job: PullJob, plan: Plan) -> None:
        """Run the pull submit() wrote a note for, and drop the note when it has ended; a pull stopped by
        a shutdown, or by a full volume with bytes staged, keeps its note, and the next start resumes it."""
        try:
            with disk_full_is_insufficient_storage():
                complete = self._run(job, plan)
        except BaseException as err:
            if not (job.stop.is_set() or self._resumable(err, plan)):
                self.store.drop_intent(plan.request.repo, plan.key)
            raise
        self.store.drop_intent(plan.request.repo, plan.key)  # before the last line: who saw it sees no note
        job.publish(complete)

    def _resumable(self, err: BaseException, plan: Plan) -> bool:
        """A full volume stopped the pull with bytes staged: once there is room, it goes on from there."""
        return (isinstance(err, ProxyError) and err.code == "insufficient_storage"
                and any(self.store.staged_bytes(f.filename) for f in plan.files))

    def _run(self, job: PullJob, plan: Plan) -> Complete:
        """Fetch, check and install every file; returns the `complete` line."""
        started = time.monotonic()
        progress = ProgressReporter(job, plan.total_bytes, self.progress_interval_s)
        with contextlib.ExitStack() as locks:
            staged = []
            for remote in plan.files:
                locks.enter_context(self._file_lock(job, remote.filename))
                # Again under the lock, held until the install: another process may have installed the
                # name since plan(), and none can from here on.
                self._check_name_free(plan.request, remote)
                if self._installed(plan, remote) or self._adopt(job, plan, remote):
                    progress.skip(remote.size)
                    continue
                staged.append((self._fetch(job, remote, progress), remote))
            for path, remote in staged:
                self.store.install(path, self._provenance(plan, remote))
            log.info("pulled %s/%s: %d bytes in %.1fs", plan.request.repo, plan.key, plan.total_bytes,
                     time.monotonic() - started)
            if self._needs_smoke_test(plan):
                self._smoke_test(job, plan)
        return self._complete_event(plan)

    def _installed(self, plan: Plan, remote: RemoteFile) -> bool:
        """Installed from this pull's repo and still the hub's bytes."""
        return self.store.verified_record(remote.filename, remote.size, remote.sha256, plan.request.repo) is not None

    def _check_name_free(self, request: PullRequest, remote: RemoteFile) -> None:
        """Raises: ProxyError name_conflict when the file name is installed from another repo and the
        request does not say `replace`."""
        name = naming.basename(remote.filename)
        record = self.store.provenance.get(name)
        if request.replace or record is None or record.repo.lower() == request.repo.lower() \
                or not self.store.final_path(name).is_file():
            return
        raise ProxyError("name_conflict", f"{name} is installed from {record.repo}; pull with "
                         '"replace": true to replace it with the file of ' + request.repo)

    def _fetch(self, job: PullJob, remote: RemoteFile, progress: ProgressReporter) -> Path:
        """Download one file into staging and check it; a failed check deletes it.

        Raises:
            ProxyError: checksum_mismatch, invalid_gguf, insufficient_storage, hub_unavailable.
        """
        name = naming.basename(remote.filename)
        path = self.store.staging_path(name)
        try:
            digest = Transfer(remote.fetch, remote.size, path, remote.sha256,
                              self.options, job.stop, on_progress=progress.file_callback(name),
                              on_bytes=self.count_bytes).run()
            progress.file_done(name, remote.size)
            job.publish(Verifying(name))
            _verify(path, remote, digest)
        except TransferCancelled as err:  # shutdown: the transfer saved its progress for the next start
            raise ProxyError("pull_stopped", "the proxy stopped while pulling; its next start resumes it") from err
        except ProxyError as err:
            if err.code in ("checksum_mismatch", "invalid_gguf"):  # not the Hub's bytes: nothing to resume
                self.store.discard_staging(name)
            raise
        return path

    def _adopt(self, job: PullJob, plan: Plan, remote: RemoteFile) -> bool:
        """Take a file someone put under its final name by hand as installed, when it is exactly the
        Hub's file: hashing it beats downloading it again."""
        final = self.store.final_path(remote.filename)
        if not remote.sha256 or not final.is_file() or final.stat().st_size != remote.size:
            return False
        job.publish(Verifying(final.name))
        with open(final, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        try:
            _verify(final, remote, digest)
        except ProxyError:
            return False  # not the Hub's file: download it and replace this one
        self.store.provenance.put(self._provenance(plan, remote))
        log.info("adopted %s, already in MODELS_DIR with the Hub's sha256", final.name)
        return True

    @contextlib.contextmanager
    def _file_lock(self, job: PullJob, filename: str):
        """Hold the cross-process lock of one file name, waiting while another process holds it."""
        announced = False
        while True:
            with self.store.lock(filename, blocking=False) as acquired:
                if acquired:
                    yield
                    return
            if not announced:
                job.publish(Queued(1, "another process is pulling this file"))
                announced = True
            if job.stop.wait(LOCK_POLL_S):
                raise ProxyError("pull_stopped", "the proxy stopped while another process was pulling this file")

    def _needs_smoke_test(self, plan: Plan) -> bool:
        if plan.request.verify != "load":
            return False
        records = self.store.provenance.all()
        return not all((r := records.get(naming.basename(f.filename))) and r.smoke_tested for f in plan.files)

    def _smoke_test(self, job: PullJob, plan: Plan) -> None:
        """Load the installed files in the backend and generate a token.

        Raises:
            ProxyError: smoke_test_failed (the backend could not load them: they are quarantined);
                backend_unavailable, backend_timeout (they stay installed, not smoke-tested, for a later
                `verify: "load"` pull to test without downloading them).
        """
        model = naming.model_id(plan.key)
        names = [naming.basename(f.filename) for f in plan.files]
        job.publish(SmokeTesting(model))
        if self.smoke_test is None:
            return
        try:
            self.smoke_test(model)
        except ProxyError as err:
            if err.code == "smoke_test_failed":
                self.store.quarantine(names)
                raise
            raise ProxyError(err.code, f"{err.message}: {plan.key} is installed but not smoke-tested; pull it "
                             'again with "verify": "load" when the backend answers') from err
        self.store.provenance.mark_smoke_tested(names)

    def _provenance(self, plan: Plan, remote: RemoteFile) -> Provenance:
        return Provenance(
            filename=naming.basename(remote.filename), repo=plan.request.repo, repo_path=remote.filename,
            revision=plan.request.revision, commit=plan.listing.commit, size=remote.size,
            sha256=remote.sha256, source_host=self.hub.host,
            pulled_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))

    def _complete_event(self, plan: Plan) -> Complete:
        files = tuple(naming.basename(f.filename) for f in plan.files) if len(plan.files) > 1 else ()
        return Complete(model=plan.request.repo, filename=plan.key, path=str(self.store.final_path(plan.key)),
                        size_mb=round(plan.total_bytes / 1e6, 1), sha256=plan.files[0].sha256,
                        revision=plan.listing.commit, model_id=naming.model_id(plan.key), files=files)


def _check_size(remote: RemoteFile) -> None:
    """Raises: ProxyError hub_unavailable when the Hub reports no size, or one no file can have."""
    if not isinstance(remote.size, int) or remote.size < 0:
        raise ProxyError("hub_unavailable", f"the Hub reported no valid size for {remote.filename} "
                         f"({remote.size!r}); try again later")


def _verify(path: Path, remote: RemoteFile, digest: str) -> None:
    """Size, then sha256, then the GGUF header, in that order.

    Raises:
        ProxyError: checksum_mismatch, invalid_gguf.
    """
    size = path.stat().st_size
    if size != remote.size:
        raise ProxyError("checksum_mismatch", f"received {size} bytes, the Hub lists {remote.size}")
    if remote.sha256 and digest != remote.sha256.lower():
        raise ProxyError("checksum_mismatch", "sha256 of the received bytes differs from the Hub's")
    try:
        scan_gguf_header(path)
    except InvalidGGUF as err:
        raise ProxyError("invalid_gguf", f"not a valid GGUF file: {err}") from err
