"""Resume notes: a pull accepted writes one beside the store's intents (MODELS_DIR/.proxy/pending), and it
stays until the pull has ended, so the next start resumes what a shutdown, or a full volume with bytes
staged, stopped (proxy/declared/preload.py reads them)."""
from __future__ import annotations

import contextlib
from typing import Iterator

from proxy.errors import ErrorCode, ProxyError, disk_full_is_insufficient_storage
from proxy.pulls.install import Installer
from proxy.pulls.jobs import PullJob
from proxy.pulls.planning import Plan


class ResumeNotes:
    def __init__(self, installer: Installer):
        self.installer, self.store = installer, installer.store

    def save(self, plan: Plan) -> None:
        """Raises: ProxyError insufficient_storage (the volume is full)."""
        request = plan.request
        with disk_full_is_insufficient_storage():
            self.store.save_intent(request.repo, plan.key, {
                "model": request.repo, "filename": plan.files[0].filename, "revision": request.revision,
                "verify": request.verify, "replace": request.replace})

    @contextlib.contextmanager
    def kept_until_ended(self, job: PullJob, plan: Plan) -> Iterator[None]:
        """Drop the note when the block ends, unless a shutdown stopped the pull or a full volume did with
        bytes staged: once there is room, it goes on from there."""
        try:
            yield
        except BaseException as err:
            if not (job.stop.is_set() or self._resumable(err, plan)):
                self.store.drop_intent(plan.request.repo, plan.key)
            raise
        self.store.drop_intent(plan.request.repo, plan.key)

    def _resumable(self, err: BaseException, plan: Plan) -> bool:
        return (isinstance(err, ProxyError) and err.code == ErrorCode.INSUFFICIENT_STORAGE
                and any(self.installer.staged_bytes(f.filename) for f in plan.files))
