"""An installed model as Docker Model Runner's OCI artifact: a config blob of its GGUF details and one
`application/vnd.docker.ai.gguf.v3` layer per file (every part of a split set), titled with the file's name."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from proxy.errors import ErrorCode, ProxyError
from proxy.models_dir.store import ModelStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DMR_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
DMR_GGUF = "application/vnd.docker.ai.gguf.v3"
TITLE = "org.opencontainers.image.title"


@dataclass(frozen=True)
class Blob:
    """One blob to push: a file on disk, or small bytes in memory (the config)."""

    digest: str  # sha256:<hex>
    size: int
    path: Path | None = None
    data: bytes | None = None
    source: str | None = None  # the oci:// reference the file was pulled from, for a cross-repository mount


@dataclass(frozen=True)
class Artifact:
    config: Blob
    layers: tuple[tuple[Blob, str], ...]  # (blob, installed file name)

    @property
    def total(self) -> int:
        return self.config.size + sum(blob.size for blob, _ in self.layers)

    def manifest(self) -> bytes:
        descriptors = [{"mediaType": DMR_GGUF, "digest": blob.digest, "size": blob.size,
                        "annotations": {TITLE: name}} for blob, name in self.layers]
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": DMR_CONFIG, "digest": self.config.digest, "size": self.config.size},
                           "layers": descriptors}, separators=(",", ":")).encode()


def build_artifact(store: ModelStore, model: str) -> Artifact:
    """The artifact of the installed model `model` (model id or file name).

    Raises:
        ProxyError: model_not_found.
    """
    files = store.files_of_model(model)
    if not files:
        raise ProxyError(ErrorCode.MODEL_NOT_FOUND, f"no installed model named {model!r}; see GET /v1/api/models")
    records = store.provenance.all()
    layers = []
    for name in files:
        path, record = store.final_path(name), records.get(name)
        size = path.stat().st_size
        known = record is not None and record.size == size and record.sha256
        layers.append((Blob("sha256:" + (record.sha256 if known else _sha256(path)), size, path,
                            source=record.source if record else None), name))
    first = records.get(files[0])
    details = (first.details if first and first.details else None) or store.details.details(store.final_path(files[0]))
    total = sum(blob.size for blob, _ in layers)
    config = {"config": {"format": "gguf", "quantization": details.get("quantization") or "",
                         "parameters": str(details.get("parameters") or ""), "size": _size_label(total),
                         "architecture": details.get("architecture") or ""},
              "rootfs": {"type": "rootfs", "diff_ids": [blob.digest for blob, _ in layers]}}
    data = json.dumps(config, separators=(",", ":")).encode()  # no timestamp: the same model, the same blob
    return Artifact(Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), data=data), tuple(layers))


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _size_label(size: int) -> str:
    """Docker Model Runner's form: `256.00 MiB`."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"
