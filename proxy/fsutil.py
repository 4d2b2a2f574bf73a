"""Small JSON files in MODELS_DIR written so that a crash mid-write leaves the previous copy."""
from __future__ import annotations

import json
import os
from pathlib import Path

TMP_SUFFIX = ".tmp"  # what the temporary copy appends to a name (store.MAX_FILENAME_BYTES counts it)


def write_json_atomically(path: Path, data, durable: bool = False, indent: int | None = None) -> None:
    """Write `data` to a temporary name, then rename it over `path`.

    `durable` also fsyncs the file and the rename, for records that must survive a power cut, not
    only a killed process (progress notes, rewritten every second, skip it).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "w") as handle:
            handle.write(json.dumps(data, indent=indent))
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full volume must not leave an empty copy behind
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
