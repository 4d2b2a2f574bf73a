"""MODELS_MANIFEST: the declared models, read from a YAML or JSON file and checked entry by entry, so a
malformed manifest stops the proxy at start instead of leaving it half-configured."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from proxy.errors import ProxyError
from proxy.pulls.request import PullRequest, parse_pull_request

SHA256_RE = re.compile(r"^[0-9a-f]{64}\Z")
ENTRY_FIELDS = ("model", "filename", "quant", "revision", "sha256", "files", "verify", "keep_loaded")
WHERE = "MODELS_MANIFEST"
# A ConfigMap holds at most 1 MiB; a larger file is refused before it is parsed (YAML of 50 MB takes a minute).
FILE_MAX_BYTES = 1024 * 1024


class ManifestError(ValueError):
    """A manifest that cannot be used: the message names the entry and field (`models[1].sha256: ...`)."""


@dataclass(frozen=True)
class Entry:
    """One declared model: what to pull, as a pull body says it, and the pins its bytes must match."""

    index: int
    model: str
    filename: str | None = None
    quant: str | None = None
    revision: str | None = None
    sha256: str | None = None
    files: tuple[tuple[str, str], ...] = ()  # (filename, sha256) of each part of a split set
    verify: str | None = None
    keep_loaded: bool = False  # loaded in the backend once installed, never unloaded for idleness

    def body(self) -> dict:
        """The pull body of this entry, without its pins."""
        fields = ("model", "filename", "quant", "revision", "verify")
        return {name: getattr(self, name) for name in fields if getattr(self, name) is not None}

    def request(self) -> PullRequest:
        """The pull request, carrying the pins the planner checks before a byte moves."""
        return dataclasses.replace(parse_pull_request(self.body()), pinned_sha256=self.sha256,
                                   pinned_parts=self.files)


@dataclass(frozen=True)
class Manifest:
    entries: tuple[Entry, ...]
    digest: str  # sha256 of the file's content: a change of it is a change of the manifest


def read_manifest(path: str | Path) -> Manifest:
    """Read and check the file at `path` (followed through symlinks each time: a ConfigMap swaps them).

    Raises:
        ManifestError: unreadable, not YAML or JSON, or an entry or field that a pull would refuse.
    """
    raw = read_manifest_bytes(path)
    return Manifest(parse_manifest(raw.decode("utf-8", "replace"), str(path)), digest_of(raw))


def read_manifest_bytes(path: str | Path) -> bytes:
    """The file's content, read no further than FILE_MAX_BYTES.

    Raises:
        ManifestError: unreadable, or larger than FILE_MAX_BYTES.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(FILE_MAX_BYTES + 1)
    except OSError as err:
        raise ManifestError(f"{WHERE} {path}: cannot be read ({err.strerror or err})") from err
    if len(raw) > FILE_MAX_BYTES:
        raise ManifestError(f"{WHERE} {path}: larger than {FILE_MAX_BYTES // 1024} KiB")
    return raw


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def load_document(text: str, name: str = "") -> Any:
    """The file's content as data: JSON when it says so (a .json name or a leading brace), YAML otherwise.

    Raises:
        ManifestError: neither parses.
    """
    try:
        if name.lower().endswith(".json") or text.lstrip().startswith("{"):
            return json.loads(text)
        return yaml.safe_load(text)
    except RecursionError as err:  # [[[[...]]]] past what the parsers recurse into
        raise ManifestError(f"{WHERE}: nested too deeply to be a manifest") from err
    except (ValueError, yaml.YAMLError) as err:
        first_line = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise ManifestError(f"{WHERE}: not valid {'JSON' if name.endswith('.json') else 'YAML or JSON'}: "
                            f"{first_line}") from err


def parse_manifest(text: str, name: str = "") -> tuple[Entry, ...]:
    """Raises: ManifestError naming the first entry and field that is wrong."""
    document = load_document(text, name)
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        raise ManifestError(f"{WHERE}: expected a mapping with a `models` list")
    unknown = sorted(set(document) - {"models"}, key=str)  # keys of any type: YAML allows numbers
    if unknown:
        raise ManifestError(f"{WHERE}.{unknown[0]}: unknown field (expected only `models`)")
    return tuple(parse_entry(i, item) for i, item in enumerate(document["models"]))


def parse_entry(index: int, item: Any) -> Entry:
    """Raises: ManifestError `models[i].field: reason`."""
    where = f"{WHERE} models[{index}]"
    if not isinstance(item, dict):
        raise ManifestError(f"{where}: expected a mapping with at least `model`")
    for key in item:
        if key not in ENTRY_FIELDS:
            raise ManifestError(f"{where}.{key}: unknown field (expected one of {', '.join(ENTRY_FIELDS)})")
    if item.get("model") is None:
        raise ManifestError(f"{where}.model: required")
    for key in ("model", "filename", "quant", "revision", "verify"):
        _check_as_pull(where, key, item)
    sha256 = _sha256(f"{where}.sha256", item.get("sha256"))
    files = _files(f"{where}.files", item.get("files"))
    keep_loaded = item.get("keep_loaded")
    if keep_loaded is not None and not isinstance(keep_loaded, bool):
        raise ManifestError(f"{where}.keep_loaded: expected true or false")
    return Entry(index, item["model"], item.get("filename"), item.get("quant"),
                 None if item.get("revision") is None else str(item["revision"]), sha256, files, item.get("verify"),
                 bool(keep_loaded))


def _check_as_pull(where: str, key: str, item: dict) -> None:
    """A field is checked as the pull endpoint checks it, so an entry the endpoint would refuse is refused here."""
    if item.get(key) is None:
        return
    value = item[key]
    if key == "revision" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # YAML reads an all-digit commit prefix as a number
    body = {"model": item["model"] if key != "model" else value, key: value}
    try:
        parse_pull_request(body)
    except ProxyError as err:
        raise ManifestError(f"{where}.{key}: {err.message}") from err


def _sha256(where: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SHA256_RE.match(value.lower()):
        raise ManifestError(f"{where}: expected 64 hex digits")
    return value.lower()


def _files(where: str, value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{where}: expected a list of {{filename, sha256}}, one per part")
    parts = []
    for i, part in enumerate(value):
        if not isinstance(part, dict) or not isinstance(part.get("filename"), str):
            raise ManifestError(f"{where}[{i}].filename: required")
        unknown = sorted(set(part) - {"filename", "sha256"}, key=str)
        if unknown:
            raise ManifestError(f"{where}[{i}].{unknown[0]}: unknown field")
        if part.get("sha256") is None:
            raise ManifestError(f"{where}[{i}].sha256: required")
        parts.append((part["filename"], _sha256(f"{where}[{i}].sha256", part["sha256"])))
    return tuple(parts)
