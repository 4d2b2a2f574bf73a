"""Where every installed file came from, in one JSON file inside MODELS_DIR, written atomically."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from core.naming import source_scheme
from proxy.models_dir.fsutil import file_lock, write_json_atomically

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
    smoke_tested: bool = False  # loaded and generated in the backend since these bytes were installed
    details: dict | None = None  # what the GGUF header says (proxy.models_dir.details), read at install
    source: str | None = None  # a registry source's canonical reference (ollama://..., oci://...); None: the Hub
    digest: str | None = None  # its manifest digest, sha256:<hex>
    # Pulled with HF_TOKEN from a private or gated repo: served to peers only with PROXY_API_KEY.
    restricted: bool = False

    @property
    def scheme(self) -> str:
        """The scheme of the source the file came from (core.naming.HUB_SCHEME for the Hub's records, which name
        no source, older ones included)."""
        return source_scheme(self.source)


class ProvenanceStore:
    """Records keyed by installed filename. A crash mid-write leaves the previous file intact; every
    change is a read-modify-write under a lock that all processes sharing MODELS_DIR take."""

    def __init__(self, path: Path):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")  # also taken by proxy/models_dir/usage.py's flush

    def get(self, filename: str) -> Provenance | None:
        return self._read().get(filename)

    def all(self) -> dict[str, Provenance]:
        return self._read()

    def put(self, record: Provenance) -> None:
        with self._editing() as records:
            records[record.filename] = record

    def remove(self, filenames: list[str]) -> None:
        with self._editing() as records:
            for name in filenames:
                records.pop(name, None)

    def mark_smoke_tested(self, filenames: list[str]) -> None:
        with self._editing() as records:
            for name in filenames:
                if name in records:
                    records[name] = dataclasses.replace(records[name], smoke_tested=True)

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, Provenance]]:
        """The records, to change in place; written back when the block changed them. No other thread or
        process reads for a change of its own in between, so no change is lost."""
        with file_lock(self.lock_path):
            records = self._read()
            before = dict(records)
            yield records
            if records != before:
                self._write(records)

    def _read(self) -> dict[str, Provenance]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("provenance file %s is unreadable; treating it as empty", self.path)
            return {}
        records, known = {}, {f.name for f in dataclasses.fields(Provenance)}
        for item in raw.get("models", []) if isinstance(raw, dict) else []:
            try:  # fields a newer version added are left out, not the record: replicas may run both
                records[item["filename"]] = Provenance(**{k: v for k, v in item.items() if k in known})
            except (TypeError, KeyError):
                log.warning("skipping a malformed provenance record")
        return records

    def _write(self, records: dict[str, Provenance]) -> None:
        write_json_atomically(self.path, {"models": [asdict(r) for r in records.values()]}, durable=True, indent=1)
