"""What an installed model's GGUF header says, as /v1/api/models shows it in `details` (Ollama's fields).

Recorded in the provenance when a pull installs a file (the install scans the header anyway); files without a
recorded value (put in MODELS_DIR by hand, installed before details were recorded, changed since) are scanned
once per size and modification time, not once a request.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from core.gguf_check import GGUFHeader, InvalidGGUF, scan_gguf_header

UNKNOWN = {"architecture": None, "parameters": None, "quantization": None, "context_length": None}


def details_of(header: GGUFHeader) -> dict:
    """`parameters` is the exact count, the tensors' elements summed (every GGUF file has them; the optional
    `general.size_label` is a rounded label such as "270M"). A part of a split set counts its own tensors."""
    return {"architecture": header.architecture, "parameters": header.parameter_count,
            "quantization": header.quantization, "context_length": header.context_length}


class DetailsCache:
    """Details of files by path, scanned again only when a file's size or modification time changes."""

    def __init__(self, scan: Callable[[Path], GGUFHeader] = scan_gguf_header):
        self._scan = scan
        self._entries: dict[Path, tuple[tuple[int, int], dict]] = {}
        self._lock = threading.Lock()

    def details(self, path: Path) -> dict:
        """The file's details; all None when it is gone or not a readable GGUF file."""
        try:
            st = path.stat()
        except OSError:
            return dict(UNKNOWN)
        stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            entry = self._entries.get(path)
        if entry is not None and entry[0] == stamp:
            return dict(entry[1])
        try:
            found = details_of(self._scan(path))
        except (InvalidGGUF, OSError):
            found = dict(UNKNOWN)
        with self._lock:
            self._entries[path] = (stamp, found)
        return dict(found)

    def keep_only(self, paths: set[Path]) -> None:
        """Forget files no longer installed, so the cache stays as small as MODELS_DIR."""
        with self._lock:
            for path in self._entries.keys() - paths:
                del self._entries[path]
