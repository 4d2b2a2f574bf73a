"""The one way into a pull for every caller (the HTTP route, preload, the CLI's --local, the manifest, and a
peer's miss through proxy/pulls/through.py): start() plans it, answers from what is installed, or hands it to a
job; counts it, and keeps it in the history. A job holds its files' locks, keeps its resume note
(proxy/pulls/resume.py), fetches each file (proxy/pulls/fetch.py) and hands it to the installer."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from core import naming
from proxy.errors import ErrorCode, ProxyError, disk_full_is_insufficient_storage
from proxy.metrics import Metrics
from proxy.models_dir.provenance import Provenance
from proxy.pulls.events import Complete, Evicting, Failed, SmokeTesting, Verifying
from proxy.pulls.fetch import Fetcher, file_locks
from proxy.pulls.install import Installer
from proxy.pulls.jobs import PullJob, PullJobs, Ticket
from proxy.pulls.planning import Plan, Planner, check_name_free
from proxy.pulls.progress import ProgressReporter
from proxy.pulls.request import PullRequest, parse_pull_request, who_asked
from proxy.pulls.resume import ResumeNotes
from proxy.pulls.transfer import TransferOptions
from proxy.sources.cooldown import MirrorHealth

log = logging.getLogger(__name__)


class PullService:
    def __init__(self, planner: Planner, installer: Installer, jobs: PullJobs, options: TransferOptions,
                 metrics: Metrics, progress_interval_s: float = 0.5,
                 on_used: Callable[[list[str]], None] = lambda filenames: None, mirrors: MirrorHealth | None = None):
        self.planner, self.installer, self.jobs, self.metrics = planner, installer, jobs, metrics
        self.store, self.notes = installer.store, ResumeNotes(installer)
        self.progress_interval_s = progress_interval_s
        self.on_used = on_used  # a pull names its files: their last-used time (proxy/models_dir/usage.py)
        # Mirrors every pull skips for now, shared with the source.
        self.fetcher = Fetcher(installer, options, metrics, mirrors or MirrorHealth())

    def start(self, request: PullRequest | Any, remember: bool = False) -> Ticket:
        """Start a pull (a request, or a body to parse as the pull endpoint does).

        `remember`, for callers nobody watches (preload, the manifest): a pull that ends here, refused or
        installed already, shows in GET /v1/api/pulls, and nothing is raised.

        Raises:
            ProxyError: what parse_pull_request, Planner.plan and _submit raise (without `remember`).
        """
        try:
            request = request if isinstance(request, PullRequest) else parse_pull_request(request)
            plan = self.planner.plan(request)
            cached = self.planner.cached(plan)
            ticket = Ticket(request, cached=cached) if cached else Ticket(request, *self._submit(plan))
        except Exception as err:  # noqa: BLE001 - without `remember`, raised again at once
            return self._refused(request, err, remember)
        if ticket.cached is not None:
            self.on_used(ticket.cached.files or [ticket.cached.filename])
            self.metrics.count_pull("cached", None)
            if remember:
                self.jobs.record_ended(request.repo, ticket.cached.filename, ticket.cached)
        return ticket

    def _refused(self, request: PullRequest | Any, err: Exception, remember: bool) -> Ticket:
        """Count a pull that ended before a job; raise again, or remember it as a failed pull."""
        if not isinstance(err, ProxyError):
            if not remember:
                raise err
            log.error("pull of %s failed", who_asked(request)[0], exc_info=err)
            err = ProxyError(ErrorCode.INTERNAL_ERROR, "internal error; see the proxy's log")
        self.metrics.count_pull("rejected", err.code)
        if not remember:
            raise err
        job = self.jobs.record_ended(*who_asked(request), Failed.of(err))
        return Ticket(request if isinstance(request, PullRequest) else None, job=job)

    def _submit(self, plan: Plan) -> tuple[PullJob, bool]:
        """Raises: ProxyError insufficient_storage, model_busy, pull_queue_full."""
        evicted = self.planner.check_space(plan) if self.jobs.active(plan.key) is None else []

        def make() -> PullJob:
            job = PullJob(plan.key, plan.request.repo, plan.key, lambda job: self.run_noted(job, plan),
                          on_end=lambda job: (self.planner.release(plan.key), self.metrics.count_job(job)))
            self.notes.save(plan)  # on acceptance: a queued pull survives a restart as a running one does
            job.publish(job.starting_event())
            for filename in evicted:  # evicted already, before the job: the pull that caused it shows it
                job.publish(Evicting(filename))
            return job

        try:
            return self.jobs.submit(plan.key, plan.request.repo, make)
        except ProxyError:
            if self.jobs.active(plan.key) is None:
                self.planner.release(plan.key)  # refused (the queue is full): it reserves nothing
            raise

    def run_noted(self, job: PullJob, plan: Plan) -> None:
        """Run a pull whose resume note is saved; the note goes before the last line (who saw it sees none)."""
        with self.notes.kept_until_ended(job, plan), disk_full_is_insufficient_storage():
            complete = self._run(job, plan)
        self.on_used(plan.names)
        job.publish(complete)

    def _run(self, job: PullJob, plan: Plan) -> Complete:
        """Fetch, check and install every file, under every file's lock; returns the `complete` line."""
        started = time.monotonic()
        with file_locks(self.store, job, (remote.filename for remote in plan.files)):
            # Read again under the locks, held until the install: another process may have installed a
            # name since planning, and none can from here on. The `complete` line reads these records too.
            records = dict(self.store.provenance.all())
            self._install_all(job, plan, records)
            log.info("pulled %s/%s: %d bytes in %.1fs", plan.request.repo, plan.key, plan.total_bytes,
                     time.monotonic() - started)
            if plan.needs_smoke_test(records):
                job.publish(SmokeTesting(naming.model_id(plan.key)))
                self.installer.run_smoke_test(plan.key, plan.names)
        return self.planner.complete(plan, records)

    def _install_all(self, job: PullJob, plan: Plan, records: dict[str, Provenance]) -> None:
        """Each file installed already, adopted, or fetched; the fetched ones installed once all are checked.
        `records` follows what is installed."""
        progress, staged = ProgressReporter(job, plan.total_bytes, self.progress_interval_s), []
        for remote in plan.files:
            name = naming.basename(remote.filename)
            if records.get(name) != plan.records.get(name):  # planning checked the name; another process took it
                check_name_free(plan.request, remote, records, self.store)
            if self.planner.installed(plan, records, remote) or self._adopt(job, plan, remote, records):
                progress.skip(remote.size)
                continue
            staged.append(self.fetcher.fetch_from_any(job, remote, progress))
        for path, header, remote in staged:
            record = self.installer.install(path, remote, plan.origin, header)
            records[record.filename] = record

    def _adopt(self, job: PullJob, plan: Plan, remote, records: dict[str, Provenance]) -> bool:
        if not self.installer.adoptable(remote):
            return False
        job.publish(Verifying(naming.basename(remote.filename)))
        if (record := self.installer.adopt(remote, plan.origin)) is not None:
            records[record.filename] = record
        return record is not None
