"""The reconciler: every declared model (MODELS_MANIFEST) and every PRELOAD_MODELS entry goes through
PullService.start as an HTTP pull does; the state of each declared one is what /v1/api/manifest and /readyz
report. It runs at start, on request (POST /v1/api/manifest/sync) and when the file's content changes."""
from __future__ import annotations

import datetime
import logging
import threading
from typing import Any

from core import naming
from proxy.declared.installed import EntryState, installed_as_declared, settle
from proxy.declared.keep_loaded import KeepLoaded
from proxy.declared.manifest import Entry
from proxy.declared.watch import ManifestWatch
from proxy.models_dir.store import ModelStore
from proxy.pulls.events import Complete, Failed
from proxy.pulls.service import PullService
from proxy.declared.residency_pin import ResidencyPinner

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, service: PullService, store: ModelStore, manifest_path: str | None,
                 preload: tuple[dict, ...] = (), poll_interval_s: float = 30.0,
                 pinner: ResidencyPinner | None = None):
        self.service, self.store, self.path = service, store, manifest_path
        self.preload = preload
        self.poll_interval_s = poll_interval_s
        self._states: list[EntryState] = []
        self._lock = threading.Lock()
        self._watch = ManifestWatch(manifest_path)
        self._loaded = KeepLoaded(pinner, self._lock)  # loads `keep_loaded` entries in the backend
        self._wake = threading.Event()
        self._stop = threading.Event()
        # When the loop last looked at the file and the installed models, and when a reconciliation last ended:
        # an operator (and a test) sees the reconciler at work, not only its outcome.
        self.checked_at: str | None = None
        self.reconciled_at: str | None = None

    @property
    def active(self) -> bool:
        """Whether there is anything to reconcile: a manifest or PRELOAD_MODELS."""
        return bool(self.path or self.preload)

    @property
    def error(self) -> str | None:
        """Why the manifest file as it is now is not in force (the entries read last are)."""
        return self._watch.error

    def load(self) -> None:
        """Read the manifest at start.

        Raises:
            ManifestError: the proxy must not start on it.
        """
        self._replace(self._watch.load())

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
                    self.reconciled_at = _now()
                self._loaded.check(self._states)
                self.checked_at = _now()
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
            settle(self.store, state, final)
            if self._loaded.wanted(state) and state.state == "ready":
                state.state = "loading"  # ready for /readyz only once loaded
        _log_outcome(f"manifest entry {state.entry.model}", final)
        self._loaded.pin(state)

    def _lost(self) -> bool:
        """Whether a ready entry's files are gone (deleted, evicted by hand): it leaves `ready` (/readyz says so)
        and is pulled again."""
        with self._lock:
            ready = [state for state in self._states if state.state == "ready" and state.job is None]
        lost = [state for state in ready if installed_as_declared(self.store, state) is None]
        with self._lock:
            for state in lost:
                log.warning("manifest entry %s: %s is gone; pulling it again", state.entry.model, state.filename)
                state.state, state.error, state.code = "queued", "its installed file is gone; pulling it again", None
        return bool(lost)

    def _reread(self) -> bool:
        """Whether the manifest's content changed (and parses): its entries are then the ones in force."""
        entries = self._watch.changed()
        if entries is not None:
            self._replace(entries)
        return entries is not None

    def _replace(self, entries: tuple[Entry, ...]) -> None:
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
            self._states = states


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")


def _key(entry: Entry) -> tuple:
    """What makes two entries the same declaration (their place in the list does not)."""
    return tuple(sorted(entry.body().items())), entry.sha256, entry.files


def _log_outcome(what: str, final: Any) -> None:
    if isinstance(final, Complete):
        log.info("%s: %s%s", what, final.filename, " (cached)" if final.cached else "")
    elif isinstance(final, Failed):
        log.warning("%s failed: %s (%s)", what, final.error, final.code)
