"""keep_loaded: a declared model installed is loaded in the backend with keep_alive -1, and counts as ready only
once loaded; a load that may pass later is tried at each poll, and a model the backend lost is loaded again."""
from __future__ import annotations

import logging
import threading
from typing import Iterable

from core import naming
from proxy.declared.installed import EntryState
from proxy.errors import ProxyError
from proxy.declared.residency_pin import ResidencyPinner

log = logging.getLogger(__name__)


class KeepLoaded:
    def __init__(self, pinner: ResidencyPinner | None, lock: threading.Lock):
        self.pinner = pinner  # None: nothing is loaded
        self._lock = lock  # the reconciler's, which guards every EntryState

    def wanted(self, state: EntryState) -> bool:
        return self.pinner is not None and state.entry.keep_loaded

    def check(self, states: Iterable[EntryState]) -> None:
        """Load every installed `keep_loaded` entry the backend does not hold (at start, after a load that could
        not be made yet, after the backend restarted)."""
        with self._lock:
            states = [s for s in states if s.entry.keep_loaded and s.state in ("ready", "loading")]
        if self.pinner is None or not states:
            return
        loaded = self.pinner.loaded_ids()
        for state in states:
            if loaded is None or not state.filename or naming.model_id(state.filename) not in loaded:
                with self._lock:
                    state.state = "loading"
                self.pin(state)

    def pin(self, state: EntryState) -> None:
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
