"""Discovery of the GGUF models in MODELS_DIR and resolution of the names clients use for them."""
from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

from core.naming import AmbiguousModelName, is_gguf, is_safe_name, model_id, resolve_model_id, split_part

from ..errors import ModelNotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFile:
    """One servable model: a single GGUF file or a complete split set."""

    id: str
    path: str  # the file llama.cpp opens: the file itself, or part 1 of a split set
    files: tuple[str, ...]  # every file name the model is made of, in part order
    size_bytes: int
    modified: float  # the newest modification time of its files (epoch seconds)
    signature: tuple[int, int]  # size and mtime_ns of `path`: a file replaced under it differs

    def is_current(self) -> bool:
        """Whether `path` is still the file this was made from (one stat call)."""
        try:
            return _signature(os.stat(self.path)) == self.signature
        except OSError:
            return False


@dataclass(frozen=True)
class _Found:
    name: str
    size_bytes: int
    modified: float
    signature: tuple[int, int]


def scan_models(models_dir: str) -> dict[str, ModelFile]:
    """Every servable model in `models_dir` by id, sorted by id.

    Only the folder's own entries count: hidden files and folders (`.staging/`, `.locks/`, ...), names
    the proxy would refuse (core.naming.is_safe_name), sub-folders, files that are not `*.gguf` and split
    sets missing a part are skipped.
    """
    singles: list[_Found] = []
    split_sets: dict[tuple[str, int], dict[int, _Found]] = defaultdict(dict)
    for found in _list_gguf_files(models_dir):
        part = split_part(found.name)
        if part is None:
            singles.append(found)
        elif 1 <= part.index <= part.count:
            split_sets[(part.base, part.count)][part.index] = found
    models: dict[str, ModelFile] = {}
    for found in singles:
        models[model_id(found.name)] = _single_model(models_dir, found)
    for (base, count), parts in split_sets.items():
        if len(parts) != count:
            continue  # still being pulled, or a part was deleted: not servable yet
        if base in models:
            log.warning("ignoring split set %s: a model with that id exists in %s", base, models_dir)
            continue
        models[base] = _split_model(models_dir, base, [parts[i] for i in range(1, count + 1)])
    return dict(sorted(models.items()))


def _list_gguf_files(models_dir: str) -> Iterable[_Found]:
    try:
        entries = list(os.scandir(models_dir))
    except FileNotFoundError:
        log.warning("MODELS_DIR %s does not exist; no models to serve", models_dir)
        return []
    found = []
    for entry in entries:
        if not is_safe_name(entry.name) or not is_gguf(entry.name):
            continue
        try:
            if not entry.is_file():  # follows symlinks; a folder named x.gguf is not a model
                continue
            stat = entry.stat()
        except OSError:
            continue  # removed between the listing and the stat
        found.append(_Found(entry.name, stat.st_size, stat.st_mtime, _signature(stat)))
    return found


def _signature(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_size, stat.st_mtime_ns


def _single_model(models_dir: str, found: _Found) -> ModelFile:
    return ModelFile(
        id=model_id(found.name),
        path=os.path.join(models_dir, found.name),
        files=(found.name,),
        size_bytes=found.size_bytes,
        modified=found.modified,
        signature=found.signature,
    )


def _split_model(models_dir: str, base: str, parts: list[_Found]) -> ModelFile:
    return ModelFile(
        id=base,
        path=os.path.join(models_dir, parts[0].name),  # llama.cpp finds the other parts itself
        files=tuple(part.name for part in parts),
        size_bytes=sum(part.size_bytes for part in parts),
        modified=max(part.modified for part in parts),
        signature=parts[0].signature,
    )


def resolve_model(models: Mapping[str, ModelFile], name: str) -> ModelFile | None:
    """The model `name` stands for (core.naming.resolve_model_id, the proxy's rule too), or None.

    Raises:
        ModelNotFound: the name without quant suffix matches several models.
    """
    try:
        key = resolve_model_id(models, name)
    except AmbiguousModelName as err:
        raise ModelNotFound(str(err)) from err
    return models[key] if key is not None else None
