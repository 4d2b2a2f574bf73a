"""What the manifest file says now: read at start, read again at each poll, and its entries replaced only when
its content changed. A file made invalid keeps the entries read last; why it is not in force is `error` (the log
and /v1/api/manifest say it), and that content is not parsed again until it changes."""
from __future__ import annotations

import logging

from proxy.declared.manifest import Entry, ManifestError, digest_of, parse_manifest, read_manifest, read_manifest_bytes

log = logging.getLogger(__name__)


class ManifestWatch:
    def __init__(self, path: str | None):
        self.path = path
        self.error: str | None = None  # why the file as it is now is not in force (the last good entries are)
        self._digest: str | None = None
        self._bad_digest: str | None = None  # content found malformed last: not parsed again until it changes

    def load(self) -> tuple[Entry, ...]:
        """The entries at start (none without a manifest).

        Raises:
            ManifestError: the proxy must not start on it.
        """
        if not self.path:
            return ()
        manifest = read_manifest(self.path)
        self._digest = manifest.digest
        return manifest.entries

    def changed(self) -> tuple[Entry, ...] | None:
        """Read the file again (through its symlinks): its entries when its content changed and parses, else None."""
        if not self.path:
            return None
        try:
            raw = read_manifest_bytes(self.path)
        except ManifestError as err:
            return self._malformed(err, None)
        digest = digest_of(raw)
        if digest == self._digest:
            self.error = None
            return None
        if digest == self._bad_digest:
            return None
        try:
            entries = parse_manifest(raw.decode("utf-8", "replace"), str(self.path))
        except ManifestError as err:
            return self._malformed(err, digest)
        log.info("manifest %s changed: %d entries", self.path, len(entries))
        self.error, self._bad_digest, self._digest = None, None, digest
        return entries

    def _malformed(self, err: ManifestError, digest: str | None) -> None:
        if str(err) != self.error:
            log.error("%s; keeping the manifest read before", err)
        self.error, self._bad_digest = str(err), digest
