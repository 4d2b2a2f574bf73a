"""Where every installed file came from, in one JSON file inside MODELS_DIR, written atomically."""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from proxy.fsutil import write_json_atomically

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provenance:
    filename: str  # installed name in MODELS_DIR
    repo: str
    repo_path: str  # path inside the repo
    revision: str  # as asked
    commit: str  # as resolved by the hub
    size: int
    sha256: str | None
    source_host: str
    pulled_at: str  # ISO 8601, UTC


class ProvenanceStore:
    """Records keyed by installed filename. A crash mid-write leaves the previous file intact."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def get(self, filename: str) -> Provenance | None:
        return self._read().get(filename)

    def all(self) -> dict[str, Provenance]:
        return self._read()

    def put(self, record: Provenance) -> None:
        with self._lock:
            records = self._read()
            records[record.filename] = record
            self._write(records)

    def remove(self, filenames: list[str]) -> None:
        with self._lock:
            records = self._read()
            if any(records.pop(name, None) for name in filenames):
                self._write(records)

    def _read(self) -> dict[str, Provenance]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("provenance file %s is unreadable; treating it as empty", self.path)
            return {}
        records = {}
        for item in raw.get("models", []) if isinstance(raw, dict) else []:
            try:
                records[item["filename"]] = Provenance(**item)
            except (TypeError, KeyError):
                log.warning("skipping a malformed provenance record")
        return records

    def _write(self, records: dict[str, Provenance]) -> None:
        write_json_atomically(self.path, {"models": [asdict(r) for r in records.values()]}, durable=True, indent=1)
