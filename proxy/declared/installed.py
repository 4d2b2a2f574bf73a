"""Whether a declared model is satisfied by what is installed: a pull's end settles an entry, and an entry whose
files are gone (deleted, evicted by hand) is noticed at the next poll."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import naming
from proxy.declared.manifest import Entry
from proxy.errors import ProxyError
from proxy.models_dir.provenance import Provenance
from proxy.models_dir.store import ModelStore
from proxy.pulls.events import Complete, Queued
from proxy.pulls.jobs import PullJob
from proxy.pulls.request import parse_model
from proxy.pulls.verify import is_commit


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


def settle(store: ModelStore, state: EntryState, final: Any) -> None:
    """Record a pull's end. A failed pull leaves an entry ready when what is installed still is what it
    declares (the source drifted or is down): the error and code report it."""
    state.job = None
    if isinstance(final, Complete):
        state.state, state.filename = "ready", final.filename
        state.sha256, state.revision, state.error, state.code = final.sha256, final.revision, None, None
        return
    state.error, state.code = getattr(final, "error", "pull did not end"), getattr(final, "code", None)
    record = installed_as_declared(store, state)
    state.state = "ready" if record is not None else "failed"
    if record is not None:
        state.filename, state.sha256, state.revision = record.filename, record.sha256, record.commit


def installed_as_declared(store: ModelStore, state: EntryState) -> Provenance | None:
    """The record of the installed file when it is from the entry's repo and matches its pins, else None."""
    entry = state.entry
    records = store.provenance.all()
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
    if not found or any(r is None or r.repo.lower() != repo or not store.final_path(r.filename).is_file()
                        or (pins.get(r.filename) and r.sha256 != pins[r.filename])
                        or (is_commit(entry.revision) and r.commit.lower() != entry.revision.lower())
                        or (entry.verify == "load" and not r.smoke_tested) for r in found):
        return None
    return found[0]
