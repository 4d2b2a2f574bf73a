"""The one way into a pull for every caller (the HTTP route, preload, the CLI's --local, the manifest
later): start() plans it, answers from what is installed, or hands it to a job; counts it, and keeps it in
the history. The job fetches each file through the transfer and hands it to the installer."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from core import naming
from core.gguf_check import GGUFHeader
from proxy.errors import ErrorCode, ProxyError, disk_full_is_insufficient_storage
from proxy.metrics import Metrics
from proxy.provenance import Provenance
from proxy.pulls.events import Complete, Evicting, Failed, PullEvent, Queued, SmokeTesting, Verifying
from proxy.pulls.install import Installer, progress_path
from proxy.pulls.jobs import PullJob, PullRegistry
from proxy.pulls.planning import Plan, Planner, check_name_free
from proxy.pulls.progress import ProgressReporter
from proxy.pulls.request import PullRequest, parse_pull_request
from proxy.pulls.transfer import Transfer, TransferCancelled, TransferOptions
from proxy.pulls.verify import verify_download
from proxy.sources.remote import RemoteFile
from proxy.retry import BUSY_WAIT_MAX_S
from proxy.sources.cooldown import MirrorHealth

log = logging.getLogger(__name__)
LOCK_POLL_S = 0.5


@dataclass(frozen=True)
class Ticket:
    """What start() answers: the `complete` line of a pull already installed, or the job to follow."""

    request: PullRequest | None  # None: the body did not parse (a remembered failure)
    job: PullJob | None = None
    joined: bool = False  # the job was already running for another caller
    cached: Complete | None = None

    def events(self) -> Iterator[PullEvent]:
        if self.cached is not None:
            yield self.cached
        else:
            yield from self.job.follow(self.joined)

    def wait(self, timeout_s: float | None = None) -> PullEvent:
        return self.cached if self.cached is not None else self.job.wait(timeout_s)


class PullService:
    def __init__(self, planner: Planner, installer: Installer, registry: PullRegistry, options: TransferOptions,
                 metrics: Metrics, progress_interval_s: float = 0.5,
                 on_used: Callable[[list[str]], None] = lambda filenames: None, mirrors: MirrorHealth | None = None):
        self.planner, self.installer, self.registry, self.options = planner, installer, registry, options
        self.store = installer.store
        self.metrics = metrics
        self.progress_interval_s = progress_interval_s
        self.on_used = on_used  # a pull names its files: their last-used time (proxy/usage.py)
        self.mirrors = mirrors or MirrorHealth()  # shared with the source: mirrors every pull skips for now

    def start(self, request: PullRequest | Any, remember: bool = False) -> Ticket:
        """Start a pull (a request, or a body to parse as the pull endpoint does).

        `remember`, for callers nobody watches (preload, the manifest): a pull that ends here, refused or
        installed already, shows in GET /v1/api/pulls, and nothing is raised.

        Raises:
            ProxyError: what parse_pull_request, Planner.plan and _submit raise (without `remember`).
        """
        try:
            if not isinstance(request, PullRequest):
                request = parse_pull_request(request)
            ticket = self._start(request)
        except Exception as err:  # noqa: BLE001 - without `remember`, raised again at once
            return self._refused(request, err, remember)
        if ticket.cached is not None:
            self.on_used(ticket.cached.files or [ticket.cached.filename])
            self.metrics.count_pull("cached", None)
            if remember:
                self.registry.record_ended(request.repo, ticket.cached.filename, ticket.cached)
        return ticket

    def start_detached(self, request: PullRequest, admit: Callable[[Plan], None] = lambda plan: None,
                       on_end: Callable[[PullJob], None] = lambda job: None) -> PullJob:
        """A pull of `request.filename` whose planning runs in its job, in the pull queue, so the caller never
        waits on the source (a peer's miss); the job already fetching that file when there is one. `admit(plan)`
        may refuse the plan by raising ProxyError; `on_end` is told when a new job ends.

        Raises:
            ProxyError: pull_queue_full, model_busy.
        """
        key = naming.basename(request.filename)
        planned: list[Plan] = []

        def run(job: PullJob) -> None:
            plan = self.planner.plan(request)
            admit(plan)
            if self._is_cached(plan):
                job.publish(dataclasses.replace(self._complete(plan), cached=True))
                return
            planned.append(plan)
            for filename in self.planner.check_space(plan):
                job.publish(Evicting(filename))
            self._save_note(plan)
            self._run_remembered(job, plan)

        def ended(job: PullJob) -> None:
            for plan in planned:
                self.planner.release(plan.key)
            self.metrics.count_job(job)
            on_end(job)

        return self.registry.submit(key, request.repo, lambda: PullJob(key, request.repo, key, run, ended))[0]

    def _start(self, request: PullRequest) -> Ticket:
        plan = self.planner.plan(request)
        if self._is_cached(plan):
            return Ticket(request, cached=dataclasses.replace(self._complete(plan), cached=True))
        job, joined = self._submit(plan)
        return Ticket(request, job=job, joined=joined)

    def _refused(self, request: PullRequest | Any, err: Exception, remember: bool) -> Ticket:
        """Count a pull that ended before a job; raise again, or remember it as a failed pull."""
        if not isinstance(err, ProxyError):
            if not remember:
                raise err
            log.error("pull of %s failed", _who(request)[0], exc_info=err)
            err = ProxyError(ErrorCode.INTERNAL_ERROR, "internal error; see the proxy's log")
        self.metrics.count_pull("rejected", err.code)
        if not remember:
            raise err
        job = self.registry.record_ended(*_who(request), Failed.of(err))
        return Ticket(request if isinstance(request, PullRequest) else None, job=job)

    def _is_cached(self, plan: Plan) -> bool:
        """Every file is installed from this repo, still matches the source, and was smoke-tested if the
        pull asks for it."""
        return all(self.planner.installed(plan, plan.records, f) for f in plan.files) \
            and not plan.needs_smoke_test(plan.records)

    def _submit(self, plan: Plan) -> tuple[PullJob, bool]:
        """Raises: ProxyError insufficient_storage, model_busy, pull_queue_full."""
        evicted = self.planner.check_space(plan) if self.registry.active(plan.key) is None else []

        def make() -> PullJob:
            job = PullJob(plan.key, plan.request.repo, plan.key, lambda job: self._run_remembered(job, plan),
                          on_end=lambda job: self._ended(plan, job))
            self._save_note(plan)  # on acceptance: a queued pull survives a restart as a running one does
            job.publish(job.starting_event())
            for filename in evicted:  # evicted already, before the job: the pull that caused it shows it
                job.publish(Evicting(filename))
            return job

        try:
            return self.registry.submit(plan.key, plan.request.repo, make)
        except ProxyError:
            if self.registry.active(plan.key) is None:
                self.planner.release(plan.key)  # refused (the queue is full): it reserves nothing
            raise

    def _ended(self, plan: Plan, job: PullJob) -> None:
        self.planner.release(plan.key)
        self.metrics.count_job(job)

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
        """Run the pull _submit() wrote a note for, and drop the note when it has ended; a pull stopped by
        a shutdown, or by a full volume with bytes staged, keeps its note, and the next start resumes it."""
        try:
            with disk_full_is_insufficient_storage():
                complete = self._run(job, plan)
        except BaseException as err:
            if not (job.stop.is_set() or self._resumable(err, plan)):
                self.store.drop_intent(plan.request.repo, plan.key)
            raise
        self.store.drop_intent(plan.request.repo, plan.key)  # before the last line: who saw it sees no note
        self.on_used(plan.names)
        job.publish(complete)

    def _resumable(self, err: BaseException, plan: Plan) -> bool:
        """A full volume stopped the pull with bytes staged: once there is room, it goes on from there."""
        return (isinstance(err, ProxyError) and err.code == ErrorCode.INSUFFICIENT_STORAGE
                and any(self.installer.staged_bytes(f.filename) for f in plan.files))

    def _run(self, job: PullJob, plan: Plan) -> Complete:
        """Fetch, check and install every file, under every file's lock; returns the `complete` line."""
        started = time.monotonic()
        with contextlib.ExitStack() as locks:
            for remote in plan.files:
                locks.enter_context(self._file_lock(job, remote.filename))
            # Read again under the locks, held until the install: another process may have installed a
            # name since planning, and none can from here on.
            records = dict(self.store.provenance.all())
            self._install_all(job, plan, records)
            log.info("pulled %s/%s: %d bytes in %.1fs", plan.request.repo, plan.key, plan.total_bytes,
                     time.monotonic() - started)
            if plan.needs_smoke_test(records):
                job.publish(SmokeTesting(naming.model_id(plan.key)))
                self.installer.run_smoke_test(plan.key, plan.names)
        return self._complete(plan)

    def _install_all(self, job: PullJob, plan: Plan, records: dict[str, Provenance]) -> None:
        """Each file installed already, adopted, or fetched; the fetched ones installed once all are checked.
        `records` follows what is installed."""
        progress = ProgressReporter(job, plan.total_bytes, self.progress_interval_s)
        staged = []
        for remote in plan.files:
            check_name_free(plan.request, remote, records, self.store)
            if self.planner.installed(plan, records, remote) or self._adopt(job, plan, remote, records):
                progress.skip(remote.size)
                continue
            staged.append(self._fetch_from_any(job, remote, progress))
        for path, header, remote in staged:
            record = self.installer.install(path, remote, plan.origin, header)
            records[record.filename] = record

    def _adopt(self, job: PullJob, plan: Plan, remote: RemoteFile, records: dict[str, Provenance]) -> bool:
        if not self.installer.adoptable(remote):
            return False
        job.publish(Verifying(naming.basename(remote.filename)))
        record = self.installer.adopt(remote, plan.origin)
        if record is not None:
            records[record.filename] = record
        return record is not None

    def _fetch_from_any(self, job: PullJob, remote: RemoteFile, progress: ProgressReporter
                        ) -> tuple[Path, GGUFHeader, RemoteFile]:
        """Fetch from the first source that delivers checked bytes (a mirror, then the next, then the Hub).

        Raises:
            ProxyError: as `_fetch`, from the last source.
        """
        *tried, last = (remote, *remote.alternates)
        for candidate in tried:
            if self.mirrors.cooling(candidate.source_host):
                continue
            try:
                return (*self._fetch(job, candidate, progress, has_next=True), candidate)
            except ProxyError as err:
                if not err.code.tries_next_source:
                    raise
                if not err.code.source_lacks_it:
                    self.mirrors.failed(candidate.source_host, err.code)
                self.installer.discard_staging(naming.basename(candidate.filename))
                log.warning("fetching %s from %s failed (%s); trying the next source", candidate.filename,
                            candidate.source_host, err.code)
        return (*self._fetch(job, last, progress), last)

    def _fetch(self, job: PullJob, remote: RemoteFile, progress: ProgressReporter,
               has_next: bool = False) -> tuple[Path, GGUFHeader]:
        """Download one file into staging and check it; the staged file and its GGUF header. A mirror with a
        source after it gets short timeouts and one attempt, so a bad one delays the pull by seconds.

        Raises:
            ProxyError: checksum_mismatch, invalid_gguf, insufficient_storage, hub_unavailable, pull_stopped.
        """
        name = naming.basename(remote.filename)
        path = self.installer.staging_path(name)
        try:
            options, busy_wait_s = self.options, BUSY_WAIT_MAX_S if remote.source_host else 0.0
            if remote.source_host and has_next:
                limit_s = self.mirrors.timeout_s
                options = dataclasses.replace(
                    options, max_retries=1, stall_ends=True, stall_timeout_s=min(options.stall_timeout_s, limit_s),
                    connect_timeout_s=min(options.connect_timeout_s, limit_s))
                busy_wait_s = self.mirrors.busy_wait_s
            digest = Transfer(remote.fetch, remote.size, path, progress_path(path), remote.digest, options,
                              job.stop, on_progress=progress.file_callback(name),
                              on_bytes=self.metrics.pull_bytes.inc, busy_wait_s=busy_wait_s,
                              digest_algorithm=remote.digest_algorithm).run()
            progress.file_done(name, remote.size)
            job.publish(Verifying(name))
            header = verify_download(path, remote, digest)
        except TransferCancelled as err:  # shutdown: the transfer saved its progress for the next start
            raise ProxyError(ErrorCode.PULL_STOPPED,
                             "the proxy stopped while pulling; its next start resumes it") from err
        except ProxyError as err:
            if err.code.bytes_were_wrong:
                self.installer.discard_staging(name)
            raise
        return path, header

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
                raise ProxyError(ErrorCode.PULL_STOPPED,
                                 "the proxy stopped while another process was pulling this file")

    def _complete(self, plan: Plan) -> Complete:
        record = self.store.provenance.all().get(plan.key)
        return Complete(model=plan.request.repo, filename=plan.key, path=str(self.store.final_path(plan.key)),
                        size_mb=round(plan.total_bytes / 1e6, 1), sha256=plan.files[0].sha256,
                        revision=plan.resolved.commit, model_id=naming.model_id(plan.key),
                        files=tuple(plan.names) if len(plan.files) > 1 else (), source=plan.resolved.source,
                        digest=plan.resolved.commit if plan.resolved.source else None,
                        source_host=record.source_host if record is not None else None)


# A source failing with these is skipped for the file; the next one is asked.


def _who(request: PullRequest | Mapping | Any) -> tuple[str, str | None]:
    """Repo and file name to show for a pull, from its request or, when that did not parse, its body."""
    if isinstance(request, PullRequest):
        return request.repo, naming.basename(request.filename) if request.filename else None
    body = request if isinstance(request, Mapping) else {}
    model, filename = body.get("model"), body.get("filename")
    repo = str(model) if not isinstance(model, str) or "://" in model else model.partition(":")[0]
    return repo, naming.basename(filename) if isinstance(filename, str) and filename else None
