"""Names Ollama's API gave installed models: `/api/create`'s model names and `/api/copy`'s destinations, each a
second name for an installed model, kept in MODELS_DIR/.proxy/ollama_names.json (every process sharing the
volume sees them). A name is stored as Ollama writes it in full (`name:tag`, `:latest` when the tag is left out)
and points at a model id; a name whose model is gone is not shown (and goes with that model's delete)."""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Iterable, Iterator

from proxy.models_dir.fsutil import file_lock, write_json_atomically
from proxy.models_dir.store import META, ModelStore

log = logging.getLogger(__name__)
ALIASES_FILE = "ollama_names.json"
LATEST = ":latest"


def drop_name(store: ModelStore, name: str, model_id: str, files: list[str]) -> bool:
    """An Ollama delete of `name` (which stands for `model_id`, installed as `files`): forget it when it is a name
    /api/create or /api/copy gave; whether the model's files go too (not for another name of a model that keeps
    one: a pulled model, or one with names left)."""
    aliases = AliasStore(store.root)
    if not aliases.remove(name):
        return True
    record = store.provenance.get(files[0]) if files else None
    pulled = record is not None and bool(record.repo or record.source)
    return not pulled and model_id not in aliases.names([model_id]).values()


def full_name(name: str) -> str:
    """`name` with Ollama's default tag: `mine` -> `mine:latest` (a host's port is not a tag)."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else name + LATEST


class AliasStore:
    """Ollama names -> model ids, read and written under a lock across processes."""

    def __init__(self, models_dir: str | Path):
        self.path = Path(models_dir).resolve() / META / ALIASES_FILE
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    def model_of(self, name: str, installed: Iterable[str]) -> str | None:
        """The id of the installed model `name` names (`installed`: the installed model ids), or None."""
        model = self._read().get(full_name(name))
        return model if model in set(installed) else None

    def names(self, installed: Iterable[str]) -> dict[str, str]:
        """Every name whose model is installed, name -> model id."""
        ids = set(installed)
        return {name: model for name, model in self._read().items() if model in ids}

    def put(self, name: str, model_id: str) -> str:
        """Name `model_id` `name` (replacing what it named before); the full name stored."""
        name = full_name(name)
        with self._editing() as names:
            names[name] = model_id
        return name

    def remove(self, name: str) -> bool:
        """Forget `name`; whether it was there."""
        with self._editing() as names:
            return names.pop(full_name(name), None) is not None

    def forget_model(self, model_id: str) -> None:
        """Forget every name of a deleted model."""
        with self._editing() as names:
            for name in [n for n, m in names.items() if m == model_id]:
                del names[name]

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, str]]:
        with file_lock(self.lock_path):
            names = self._read()
            before = dict(names)
            yield names
            if names != before:
                write_json_atomically(self.path, {"names": names}, durable=True, indent=1)

    def _read(self) -> dict[str, str]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("%s is unreadable; Ollama's copied and created names are not shown", self.path)
            return {}
        names = raw.get("names") if isinstance(raw, dict) else None
        return {k: v for k, v in names.items() if isinstance(k, str) and isinstance(v, str)} \
            if isinstance(names, dict) else {}
