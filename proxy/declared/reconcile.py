"""The reconciler: every declared model (MODELS_MANIFEST) and every PRELOAD_MODELS entry goes through
PullService.start as an HTTP pull does; the state of each declared one is what /v1/api/manifest and /readyz
report. It runs at start, on request (POST /v1/api/manifest/sync) and when the file's content changes."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from core import naming
from proxy.errors import ProxyError
from proxy.declared.manifest import Entry, ManifestError, digest_of, parse_manifest, read_manifest, read_manifest_bytes
from proxy.pulls.events import Complete, Failed, Queued
from proxy.pulls.jobs import PullJob
from proxy.pulls.verify import is_commit
from proxy.pulls.request import parse_model
from proxy.pulls.service import PullService
from proxy.residency_pin import ResidencyPinner
from proxy.models_dir.store import ModelStore

log = logging.getLogger(__name__)


@dataclass
class EntryState:
    """What the reconciler knows of one declared model; `job` while its pull runs."""

    entry: Entry
    state: str = "queued"
    filename: str | None = None
    sha256: str | None = None
    revision: str | None = None
    error: str | None = None
    code: str | None = None
    job: PullJob | None = None

    def view(self) -> dict:
        state = self.state
        if self.job is not None and not self.job.done:
            state = "queued" if isinstance(self.job.latest, Queued) else "pulling"
        return {"model": self.entry.model, "filename": self.filename, "state": state, "sha256": self.sha256,
                "revision": self.revision, "error": self.error, "code": self.code}


class Reconciler:
    def __init__(self, service: PullService, store: ModelStore, manifest_path: str | None,
                 preload: tuple[dict, ...] = (), poll_interval_s: float = 30.0,
                 pinner: ResidencyPinner | None = None):
        self.service, self.store, self.path = service, store, manifest_path
        self.pinner = pinner  # loads `keep_loaded` entries in the backend; None: nothing is loaded
        self.preload = preload
        self.poll_interval_s = poll_interval_s
        self._states: list[EntryState] = []
        self._digest: str | None = None
        self._bad_digest: str | None = None  # content found malformed last: not parsed again until it changes
        self.error: str | None = None  # why the file as it is now is not in force (the last good entries are)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()

    @property
    def active(self) -> bool:
        """Whether there is anything to reconcile: a manifest or PRELOAD_MODELS."""
        return bool(self.path or self.preload)

    def load(self) -> None:
        """Read the manifest at start.

        Raises:
            ManifestError: the proxy must not start on it.
        """
        if self.path:
            manifest = read_manifest(self.path)
            self._replace(manifest.entries, manifest.digest)

    def run(self) -> None:
        """Reconcile now, then whenever asked or the file's content changed, until stop()."""
        self._wake.set()
        while not self._stop.is_set():
            asked = self._wake.wait(self.poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self._reread() or self._lost() or asked:
                    self.reconcile()
                self.keep_loaded()
            except Exception:  # noqa: BLE001 - the reconciler never stops: the next poll tries again
                log.exception("reconciling the declared models failed; trying again in %.0f s", self.poll_interval_s)

    def request_sync(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def views(self) -> list[dict]:
        with self._lock:
            return [state.view() for state in self._states]

    def ready(self) -> bool:
        return all(view["state"] == "ready" for view in self.views())

    def declared_filenames(self) -> frozenset[str]:
        """The file names declared models are installed under (every part of a split set): retention
        never evicts them."""
        with self._lock:
            states = list(self._states)
        names = set()
        for state in states:
            names.update(naming.basename(name) for name, _ in state.entry.files)
            name = state.filename or state.entry.filename
            if name:
                names.add(naming.basename(name))
        return frozenset(names)

    def reconcile(self) -> None:
        """Pull every declared entry, then every PRELOAD_MODELS one, one after another."""
        with self._lock:
            states = list(self._states)
        done: dict[tuple, EntryState] = {}
        for state in states:
            if self._stop.is_set():
                return
            twin = done.get(_key(state.entry))
            if twin is not None:  # the same declaration again: one pull, one outcome (not 3 source calls each)
                with self._lock:
                    state.state, state.filename, state.sha256 = twin.state, twin.filename, twin.sha256
                    state.revision, state.error, state.code = twin.revision, twin.error, twin.code
                continue
            self._reconcile_entry(state)
            done[_key(state.entry)] = state
        for body in self.preload:
            if self._stop.is_set():
                return
            final = self.service.start(body, remember=True).wait()
            _log_outcome(f"preload of {body.get('model')}", final)

    def _reconcile_entry(self, state: EntryState) -> None:
        try:
            request = state.entry.request()
        except Exception as err:  # noqa: BLE001 - checked at load; a pull refuses it the same way
            log.error("manifest entry %d: %s", state.entry.index, err)
            return
        ticket = self.service.start(request, remember=True)
        with self._lock:
            state.job = ticket.job
            state.state = "pulling"
        final = ticket.wait()
        with self._lock:
            self._settle(state, final)
            if self.pinner is not None and state.entry.keep_loaded and state.state == "ready":
                state.state = "loading"  # ready for /readyz only once loaded
        _log_outcome(f"manifest entry {state.entry.model}", final)
        self._pin(state)

    def keep_loaded(self) -> None:
        """Load every installed `keep_loaded` entry the backend does not hold (at start, after a load that could
        not be made yet, after the backend restarted); each counts as ready only once loaded."""
        with self._lock:
            states = [s for s in self._states if s.entry.keep_loaded and s.state in ("ready", "loading")]
        if self.pinner is None or not states:
            return
        loaded = self.pinner.loaded_ids()
        for state in states:
            if loaded is None or not state.filename or naming.model_id(state.filename) not in loaded:
                with self._lock:
                    state.state = "loading"
                self._pin(state)

    def _pin(self, state: EntryState) -> None:
        """Load a `loading` entry with keep_alive -1; a failure that may pass keeps it `loading` (tried again at
        the next poll), any other fails it, with the backend's error and code."""
        if self.pinner is None or state.state != "loading" or not state.filename:
            return
        try:
            self.pinner.pin(naming.model_id(state.filename))
        except ProxyError as err:
            log.warning("manifest entry %s: keep_loaded load failed: %s (%s)", state.entry.model, err.message, err.code)
            with self._lock:
                # One that may pass later (the backend starting, restarting, busy) is tried at the next poll; any
                # other (model_too_large, model_load_failed) stays until the manifest or the file changes.
                state.state = "loading" if err.code.may_pass_later else "failed"
                state.error, state.code = err.message, err.code
            return
        with self._lock:
            state.state, state.error, state.code = "ready", None, None

    def _settle(self, state: EntryState, final: Any) -> None:
        """Record a pull's end. A failed pull leaves an entry ready when what is installed still is what
        it declares (the source drifted or is down): the error and code report it."""
        state.job = None
        if isinstance(final, Complete):
            state.state, state.filename = "ready", final.filename
            state.sha256, state.revision, state.error, state.code = final.sha256, final.revision, None, None
            return
        state.error, state.code = getattr(final, "error", "pull did not end"), getattr(final, "code", None)
        record = self._installed_as_declared(state)
        state.state = "ready" if record is not None else "failed"
        if record is not None:
            state.filename, state.sha256, state.revision = record.filename, record.sha256, record.commit

    def _installed_as_declared(self, state: EntryState):
        """The record of the installed file when it is from the entry's repo and matches its pins, else None."""
        entry = state.entry
        records = self.store.provenance.all()
        names = [naming.basename(n) for n, _ in entry.files] or \
            [naming.basename(n) for n in (state.filename or entry.filename,) if n]
        pins = dict((naming.basename(n), sha) for n, sha in entry.files)
        if names and entry.sha256:
            pins.setdefault(names[0], entry.sha256)
        try:
            repo = parse_model(entry.model)[0].lower()  # a Hub repo id, or a registry's canonical reference
        except ProxyError:
            return None
        found = [records.get(name) for name in names]
        if not found or any(r is None or r.repo.lower() != repo or not self.store.final_path(r.filename).is_file()
                            or (pins.get(r.filename) and r.sha256 != pins[r.filename])
                            or (is_commit(entry.revision) and r.commit.lower() != entry.revision.lower())
                            or (entry.verify == "load" and not r.smoke_tested) for r in found):
            return None
        return found[0]

    def _lost(self) -> bool:
        """Whether a ready entry's files are gone (deleted, evicted by hand): it leaves `ready` (/readyz says so)
        and is pulled again."""
        with self._lock:
            ready = [state for state in self._states if state.state == "ready" and state.job is None]
        lost = [state for state in ready if self._installed_as_declared(state) is None]
        with self._lock:
            for state in lost:
                log.warning("manifest entry %s: %s is gone; pulling it again", state.entry.model, state.filename)
                state.state, state.error, state.code = "queued", "its installed file is gone; pulling it again", None
        return bool(lost)

    def _reread(self) -> bool:
        """Read the file again (through its symlinks); True when its content changed. A file made invalid
        keeps the entries read last, says why in the log and in `error`, and is not parsed again until its
        content changes."""
        if not self.path:
            return False
        try:
            raw = read_manifest_bytes(self.path)
        except ManifestError as err:
            return self._malformed(err, None)
        digest = digest_of(raw)
        if digest == self._digest:
            self.error = None
            return False
        if digest == self._bad_digest:
            return False
        try:
            entries = parse_manifest(raw.decode("utf-8", "replace"), str(self.path))
        except ManifestError as err:
            return self._malformed(err, digest)
        log.info("manifest %s changed: %d entries", self.path, len(entries))
        self.error, self._bad_digest = None, None
        self._replace(entries, digest)
        return True

    def _malformed(self, err: ManifestError, digest: str | None) -> bool:
        if str(err) != self.error:
            log.error("%s; keeping the manifest read before", err)
        self.error, self._bad_digest = str(err), digest
        return False

    def _replace(self, entries: tuple[Entry, ...], digest: str) -> None:
        """New entries; one unchanged keeps what is known of it until it is reconciled again."""
        with self._lock:
            known = {_key(state.entry): state for state in self._states}
            states = []
            for entry in entries:
                old = known.get(_key(entry))
                state = EntryState(entry) if old is None else old
                state.entry = entry
                if old is None:
                    state.filename = naming.basename(entry.filename) if entry.filename else None
                    state.sha256 = entry.sha256 or (entry.files[0][1] if entry.files else None)
                    state.revision = entry.revision
                states.append(state)
            self._states, self._digest = states, digest


def _key(entry: Entry) -> tuple:
    """What makes two entries the same declaration (their place in the list does not)."""
    return tuple(sorted(entry.body().items())), entry.sha256, entry.files


def _log_outcome(what: str, final: Any) -> None:
    if isinstance(final, Complete):
        log.info("%s: %s%s", what, final.filename, " (cached)" if final.cached else "")
    elif isinstance(final, Failed):
        log.warning("%s failed: %s (%s)", what, final.error, final.code)
