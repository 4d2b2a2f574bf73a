"""One file's bytes into staging, checked, from the first source that delivers them: the mirrors in order, each
with short timeouts and one attempt while a source follows, then the Hub. Which failures move on to the next
source, and which cool a mirror down, the codes say (ErrorCode.tries_next_source, source_lacks_it); the
mirrors' health is shared with the source that lists them (proxy/sources/cooldown.py)."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Iterable, Iterator

from core import naming
from core.gguf_check import GGUFHeader
from proxy.errors import ErrorCode, ProxyError
from proxy.metrics import Metrics
from proxy.pulls.events import Queued, Verifying
from proxy.pulls.install import Installer, progress_path
from proxy.pulls.jobs import PullJob
from proxy.pulls.progress import ProgressReporter
from proxy.pulls.transfer import Transfer, TransferCancelled, TransferOptions
from proxy.pulls.verify import verify_download
from proxy.retry import BUSY_WAIT_MAX_S
from proxy.sources.cooldown import MirrorHealth
from proxy.sources.remote import RemoteFile
from proxy.models_dir.store import ModelStore

log = logging.getLogger(__name__)
LOCK_POLL_S = 0.5


class Fetcher:
    def __init__(self, installer: Installer, options: TransferOptions, metrics: Metrics, mirrors: MirrorHealth):
        self.installer, self.options, self.metrics, self.mirrors = installer, options, metrics, mirrors

    def fetch_from_any(self, job: PullJob, remote: RemoteFile, progress: ProgressReporter
                       ) -> tuple[Path, GGUFHeader, RemoteFile]:
        """The staged file, its header and the source that delivered it (a mirror, then the next, then the Hub).

        Raises:
            ProxyError: as `fetch`, from the last source.
        """
        *tried, last = (remote, *remote.alternates)
        for candidate in tried:
            if self.mirrors.cooling(candidate.source_host):
                continue
            try:
                return (*self.fetch(job, candidate, progress, has_next=True), candidate)
            except ProxyError as err:
                if not err.code.tries_next_source:
                    raise
                if not err.code.source_lacks_it:
                    self.mirrors.failed(candidate.source_host, err.code)
                self.installer.discard_staging(naming.basename(candidate.filename))
                log.warning("fetching %s from %s failed (%s); trying the next source", candidate.filename,
                            candidate.source_host, err.code)
        return (*self.fetch(job, last, progress), last)

    def fetch(self, job: PullJob, remote: RemoteFile, progress: ProgressReporter,
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
def file_locks(store: ModelStore, job: PullJob, filenames: Iterable[str]) -> Iterator[None]:
    """Hold the cross-process lock of each file name, waiting while another process holds one.

    Raises:
        ProxyError: pull_stopped, when the job is stopped while it waits.
    """
    with contextlib.ExitStack() as locks:
        for filename in filenames:
            locks.enter_context(_file_lock(store, job, filename))
        yield


@contextlib.contextmanager
def _file_lock(store: ModelStore, job: PullJob, filename: str) -> Iterator[None]:
    announced = False
    while True:
        with store.lock(filename, blocking=False) as acquired:
            if acquired:
                yield
                return
        if not announced:
            job.publish(Queued(1, "another process is pulling this file"))
            announced = True
        if job.stop.wait(LOCK_POLL_S):
            raise ProxyError(ErrorCode.PULL_STOPPED, "the proxy stopped while another process was pulling this file")
