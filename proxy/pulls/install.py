"""Installing a pull's files: where a download is staged (the layout is proxy/models_dir/staging.py's), the checks
a staged file passes, adopting a file put in place by hand, the atomic install with its provenance, and what a smoke
test's outcome does to installed files."""
from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core import naming
from proxy.errors import ErrorCode, ProxyError
from core.gguf_check import GGUFHeader
from proxy.models_dir.details import details_of
from proxy.models_dir.provenance import Provenance
from proxy.pulls.verify import file_digest, verify_download
from proxy.sources.remote import RemoteFile
from proxy.models_dir.staging import PARTIAL_SUFFIX, PROGRESS_SUFFIX, STAGING
from proxy.models_dir.store import ModelStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Origin:
    """Where a pull's files come from, as their provenance records it."""

    repo: str
    revision: str  # as asked
    commit: str  # as the source resolved it
    source_host: str
    source: str | None = None  # a registry source's canonical reference (its digest: `commit`)
    restricted: bool = False  # pulled with a token from a private or gated repo


def progress_path(staged: Path) -> Path:
    """The progress note of a staging file."""
    return staged.with_name(staged.name + PROGRESS_SUFFIX)


class Installer:
    def __init__(self, store: ModelStore, smoke_test: Callable[[str], None] | None = None):
        self.store = store
        self.staging = store.root / STAGING
        self.smoke_test = smoke_test  # callable(model_id) raising ProxyError; None: no backend to ask

    def ensure_dirs(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)

    def staging_path(self, filename: str) -> Path:
        return self.store.child(self.staging, naming.basename(filename) + PARTIAL_SUFFIX)

    def staged_bytes(self, filename: str) -> int:
        """Bytes an earlier, interrupted download of this file left in staging."""
        path = self.staging_path(filename)
        return path.stat().st_size if progress_path(path).exists() and path.exists() else 0

    def discard_staging(self, filename: str) -> None:
        path = self.staging_path(filename)
        path.unlink(missing_ok=True)
        progress_path(path).unlink(missing_ok=True)

    def matches(self, record: Provenance | None, remote: RemoteFile, repo: str | None = None) -> bool:
        """Whether an installed file's record (read by the caller) still is the source's file, lies on disk
        whole, and came from `repo` when given."""
        if record is None or (remote.sha256 and record.sha256 != remote.sha256) or \
                (remote.size and record.size != remote.size):
            return False
        if repo is not None and record.repo.lower() != repo.lower():
            return False
        return self.store.installed_size(record.filename) == record.size

    def adoptable(self, remote: RemoteFile) -> bool:
        """A file lies under the final name with the source's size, and its digest can tell whether it is
        the source's file: hashing it beats downloading it again."""
        final = self.store.final_path(remote.filename)
        return bool(remote.digest) and self.store.installed_size(final.name) == remote.size

    def adopt(self, remote: RemoteFile, origin: Origin) -> Provenance | None:
        """Take an adoptable file as installed when it is exactly the source's; its record, or None."""
        final = self.store.final_path(remote.filename)
        try:
            header = verify_download(final, remote, file_digest(final, remote.digest_algorithm))
        except ProxyError:
            return None  # not the source's file: download it and replace this one
        record = _record(remote, origin, header)
        self.store.provenance.put(record)
        log.info("adopted %s, already in MODELS_DIR with the source's sha256", final.name)
        return record

    def install(self, staged: Path, remote: RemoteFile, origin: Origin, header: GGUFHeader) -> Provenance:
        """Move a checked, fsynced staging file under its final name, with its provenance and the details of
        `header`, its header as `verify` read it."""
        record = _record(remote, origin, header)
        self.store.install(staged, record)
        return record

    def run_smoke_test(self, key: str, names: list[str]) -> None:
        """Load the installed files `names` (the model `key` names) in the backend and generate a token.

        Raises:
            ProxyError: smoke_test_failed (the backend could not load them: they are quarantined);
                backend_unavailable, backend_timeout (they stay installed, not smoke-tested, for a later
                `verify: "load"` pull to test without downloading them).
        """
        if self.smoke_test is None:
            return
        try:
            self.smoke_test(naming.model_id(key))
        except ProxyError as err:
            if err.code == ErrorCode.SMOKE_TEST_FAILED:
                self.store.quarantine(names)
                raise
            raise ProxyError(err.code, f"{err.message}: {key} is installed but not smoke-tested; pull it "
                             'again with "verify": "load" when the backend answers') from err
        self.store.provenance.mark_smoke_tested(names)


def _record(remote: RemoteFile, origin: Origin, header: GGUFHeader) -> Provenance:
    return Provenance(details=details_of(header),
        filename=naming.basename(remote.filename), repo=origin.repo, repo_path=remote.filename,
        revision=origin.revision, commit=origin.commit, size=remote.size, sha256=remote.sha256,
        source_host=remote.source_host or origin.source_host, source=origin.source, digest=origin.commit if origin.source else None,
        restricted=origin.restricted,
        pulled_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))

