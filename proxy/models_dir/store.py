"""MODELS_DIR layout: installed files, locks, resume notes, atomic install, listing, delete, provenance."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Iterator, Mapping

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.models_dir.fsutil import file_lock, fsync_dir, write_json_atomically
from proxy.models_dir.details import DetailsCache
from proxy.models_dir.provenance import Provenance, ProvenanceStore

QUARANTINE = ".quarantine"
LOCKS = ".locks"
META = ".proxy"
PENDING = "pending"
NAME_MAX_BYTES = 255  # one path component, on every filesystem a volume is likely to have
REPO_TAG_HEX = 8  # resume notes are <name>.<repo tag>.json
LOCK_SUFFIX = ".lock"
# What the store appends to a file name at most: the resume note or the lock (temporary copies of JSON files
# have short names of their own, see fsutil). The staging layout adds its own (see pulls/install.py).
RECORD_SUFFIX_BYTES = max(len(f".{'0' * REPO_TAG_HEX}.json"), len(LOCK_SUFFIX))


class ModelStore:
    """Every path handed out is a direct child of a folder inside MODELS_DIR."""

    def __init__(self, models_dir: str | Path):
        self.root = Path(models_dir).resolve()
        self.provenance = ProvenanceStore(self.root / META / "models.json")
        self.details = DetailsCache()  # for files whose record has no details

    def ensure_dirs(self) -> None:
        for sub in (LOCKS, META):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def final_path(self, filename: str) -> Path:
        return _child(self.root, naming.basename(filename))

    def child(self, folder: Path, name: str) -> Path:
        """folder/name, refusing anything that is not a plain name.

        Raises:
            ProxyError: unsafe_filename.
        """
        return _child(folder, name)

    def installed_size(self, filename: str) -> int | None:
        """The size of the file under its final name; None when there is none."""
        return _size_of(self.final_path(filename))

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def install(self, staged: Path, record: Provenance) -> Path:
        """Move a checked, fsynced staging file under its final name and record where it came from."""
        final = self.final_path(record.filename)
        os.replace(staged, final)
        fsync_dir(self.root)
        self.provenance.put(record)
        return final

    def save_intent(self, repo: str, key: str, body: dict) -> None:
        """Remember a pull until it ends, so that a restarted proxy resumes it (see proxy/declared/preload.py)."""
        write_json_atomically(self._intent_path(repo, key), body)

    def drop_intent(self, repo: str, key: str) -> None:
        self._intent_path(repo, key).unlink(missing_ok=True)

    def _intent_path(self, repo: str, key: str) -> Path:
        """One note per repo and file name: processes pulling one name from two repos keep apart notes."""
        repo_tag = hashlib.sha256(repo.lower().encode()).hexdigest()[:REPO_TAG_HEX]
        return _child(self.root / META / PENDING, f"{naming.basename(key)}.{repo_tag}.json")

    def intents(self) -> list[dict]:
        """Pull bodies of pulls a previous run did not finish."""
        bodies = []
        for path in sorted((self.root / META / PENDING).glob("*.json")):
            try:
                body = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(body, dict):
                bodies.append(body)
        return bodies

    def quarantine(self, filenames: list[str]) -> None:
        """Take installed files out of the served set (kept for a person to inspect)."""
        folder = self.root / QUARANTINE
        folder.mkdir(parents=True, exist_ok=True)
        for filename in filenames:
            with contextlib.suppress(FileNotFoundError):
                moved = _child(folder, naming.basename(filename))
                os.replace(self.final_path(filename), moved)
                os.utime(moved)  # dated when quarantined: the week it is kept counts from here
        self.provenance.remove(filenames)

    def installed_files(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("*.gguf") if p.is_file() and naming.is_safe_name(p.name))

    def files_of_model(self, name: str) -> list[str]:
        """The installed files a filename, model id, alias or repo id names (all parts of a split set)."""
        installed = self.installed_files()
        if "/" in name:
            records = self.provenance.all()
            return [f for f in installed if records.get(f) and records[f].repo.lower() == name.lower()]
        by_id: dict[str, list[str]] = {}
        for filename in installed:
            by_id.setdefault(naming.model_id(filename), []).append(filename)
        try:  # the backend's rule too: one function for both processes
            return by_id.get(naming.resolve_model_id(by_id, name), [])
        except naming.AmbiguousModelName:
            return []

    def held(self, filename: str) -> bool:
        """Whether a pull, a delete or a push (in any process on this MODELS_DIR) holds the file's lock now."""
        with self.lock(filename, blocking=False) as acquired:
            return not acquired

    def delete_unless_busy(self, filenames: list[str]) -> bool:
        """Delete under every file's lock; False, deleting nothing, while another holder (a pull installing
        it, a push reading it, in any process on this MODELS_DIR) has one."""
        with contextlib.ExitStack() as locks:
            for filename in filenames:
                if not locks.enter_context(self.lock(filename, blocking=False)):
                    return False
            self.delete(filenames)
        return True

    def delete(self, filenames: list[str]) -> None:
        for filename in filenames:
            self.final_path(filename).unlink(missing_ok=True)
        self.provenance.remove(filenames)

    def describe_installed(self, last_used: Mapping[str, str] | None = None) -> list[dict]:
        """Installed files with their provenance and GGUF details, flagging those that no longer match their
        record; `last_used` by file name (None for a file no request has named)."""
        last_used = last_used or {}
        records = self.provenance.all()
        models, paths = [], set()
        for filename in self.installed_files():
            record, path = records.get(filename), self.final_path(filename)
            size = _size_of(path)
            intact = record is not None and record.size == size
            entry = asdict(record) if record else {"filename": filename, "repo": None, "sha256": None}
            recorded = entry.pop("details", None)
            entry.update(id=naming.model_id(filename), size=size, intact=intact, last_used=last_used.get(filename),
                         details=recorded if intact and recorded else self.details.details(path))
            models.append(entry)
            paths.add(path)
        self.details.keep_only(paths)
        return models

    def installed_records(self) -> list[dict]:
        """Each installed file's `id`, `filename` and provenance record's fields, from the records alone (not
        describe_installed: no stat or header scan, so cheap enough for every forwarded request)."""
        records = self.provenance.all()
        return [{**(asdict(records[f]) if f in records else {}), "id": naming.model_id(f), "filename": f}
                for f in self.installed_files()]

    @contextlib.contextmanager
    def lock(self, filename: str, blocking: bool = True, shared: bool = False) -> Iterator[bool]:
        """A lock on one file name across processes (workers, replicas on a shared volume): exclusive for
        what writes or removes the file (a pull, a delete, an eviction), shared for what reads it (a push)."""
        with file_lock(_child(self.root / LOCKS, naming.basename(filename) + LOCK_SUFFIX), blocking,
                       shared, remove=True) as acquired:  # no file is left for every name ever tried
            yield acquired


def _child(folder: Path, name: str) -> Path:
    """folder/name, refusing anything that is not a safe name (core.naming.is_safe_name)."""
    if not naming.is_safe_name(name):
        raise ProxyError(ErrorCode.UNSAFE_FILENAME, "the file name is not a plain file name")
    return folder / name


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
