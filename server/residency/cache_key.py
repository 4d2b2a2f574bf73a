"""The prompt cache's key for a loaded model: which bytes it was loaded from and the settings that shape its KV
cache, so a state is only ever restored into the model and layout it was taken from.

The file's identity is the sha256 the proxy recorded when it installed the file (MODELS_DIR/.proxy/models.json,
trusted while the file still has the recorded size): hashing a model at every load would cost seconds a GiB.
A file the proxy did not install (copied in by hand) is named by its size, its modification time and a sha256
of its first and last MiB, which changes whenever the file is replaced.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from .discovery import ModelFile
from ..settings import Settings

log = logging.getLogger(__name__)
PROVENANCE = Path(".proxy") / "models.json"  # proxy.models_dir.store's META / models.json
_EDGE_BYTES = 1 << 20


def cache_key(settings: Settings, model: ModelFile, n_ctx: int) -> str:
    """The key of `model` loaded with a context of `n_ctx` tokens a slot under `settings`."""
    recorded = _recorded_sha256(settings.models_dir)
    files = ",".join(_identity(Path(settings.models_dir) / name, recorded.get(name)) for name in model.files)
    return "|".join([files, f"n_ctx={n_ctx}", f"slots={max(1, settings.parallel)}",
                     f"flash_attn={settings.flash_attn}", f"swa_full={settings.swa_full}", "kv=f16",
                     f"llama_cpp={_llama_version()}"])


def _identity(path: Path, recorded: tuple[str, int] | None) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"missing:{path.name}"
    if recorded is not None and recorded[1] == st.st_size:
        return f"sha256:{recorded[0]}"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(_EDGE_BYTES))
        f.seek(max(0, st.st_size - _EDGE_BYTES))
        digest.update(f.read(_EDGE_BYTES))
    return f"file:{st.st_size}:{st.st_mtime_ns}:{digest.hexdigest()}"


def _recorded_sha256(models_dir: str) -> dict[str, tuple[str, int]]:
    """sha256 and size of each installed file the proxy recorded."""
    try:
        raw = json.loads((Path(models_dir) / PROVENANCE).read_text())
    except (OSError, ValueError):
        return {}
    found = {}
    for item in raw.get("models", []) if isinstance(raw, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("sha256"), str) and isinstance(item.get("size"), int):
            found[str(item.get("filename"))] = (item["sha256"], item["size"])
    return found


def _llama_version() -> str:
    """llama.cpp's state format may change between builds."""
    try:
        from importlib.metadata import version

        return version("llama_cpp_python")
    except Exception:  # not installed as a distribution (a source tree on the path)
        return "unknown"
