"""Which files of a repo a pull takes: a named file, a quant, or the default preference."""
from __future__ import annotations

from collections import defaultdict

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.sources.remote import RemoteFile, RepoFiles

DEFAULT_QUANTS = ("Q4_K_M", "Q8_0")
LISTED_FILES_MAX = 20  # a message names at most this many of a repo's files


def group_models(listing: RepoFiles) -> list[tuple[RemoteFile, ...]]:
    """GGUF files grouped into models: a single file, or every part of a split set, in order."""
    groups: dict[tuple[str, str], list[RemoteFile]] = defaultdict(list)
    for remote in listing.files:
        if not naming.is_gguf(remote.filename):
            continue
        folder = remote.filename.rpartition("/")[0]
        part = naming.split_part(remote.filename)
        key = (folder, part.base if part else naming.basename(remote.filename))
        groups[key].append(remote)
    models = []
    for files in groups.values():
        files.sort(key=lambda f: (naming.split_part(f.filename) or naming.SplitPart("", 1, 1)).index)
        models.append(tuple(files))
    return models


def select_files(listing: RepoFiles, filename: str | None, quant: str | None) -> tuple[RemoteFile, ...]:
    """Raises: ProxyError file_not_found."""
    models = group_models(listing)
    if filename is not None:
        for files in models:
            if any(f.filename == filename for f in files):
                return _complete_set(files)
        raise ProxyError(ErrorCode.FILE_NOT_FOUND, f"{filename} is not in {listing.repo} at {listing.revision}"
                         f"{what_exists(models)}")
    candidates = [files for files in models if not _is_projector(files[0].filename)]
    wanted = (quant,) if quant else DEFAULT_QUANTS
    for tag in wanted:
        matching = [files for files in candidates if naming.quant_of(files[0].filename) == tag]
        if matching:
            return _complete_set(min(matching, key=_total_size))
    if quant or not candidates:
        what = f"no GGUF file with quant {quant}" if quant else "no GGUF file"
        raise ProxyError(ErrorCode.FILE_NOT_FOUND,
                         f"{what} in {listing.repo} at {listing.revision}{what_exists(models)}")
    return _complete_set(min(candidates, key=_total_size))


def what_exists(models: list[tuple[RemoteFile, ...]]) -> str:
    """`; it has quants Q4_K_M, Q8_0 and GGUF files a.gguf, b.gguf`: what a person can ask for instead."""
    names = sorted(f.filename for files in models for f in files)
    if not names:
        return "; it has no GGUF files"
    quants = sorted({q for files in models if (q := naming.quant_of(files[0].filename))})
    more = f" and {len(names) - LISTED_FILES_MAX} more" if len(names) > LISTED_FILES_MAX else ""
    has_quants = f"quants {', '.join(quants)} and " if quants else ""
    return f"; it has {has_quants}GGUF files {', '.join(names[:LISTED_FILES_MAX])}{more}"


def recommended(listing: RepoFiles) -> str | None:
    try:
        return select_files(listing, None, None)[0].filename
    except ProxyError:
        return None


def _complete_set(files: tuple[RemoteFile, ...]) -> tuple[RemoteFile, ...]:
    part = naming.split_part(files[0].filename)
    if part and [naming.split_part(f.filename).index for f in files] != list(range(1, part.count + 1)):
        raise ProxyError(ErrorCode.FILE_NOT_FOUND, f"split set {part.base} is missing parts on the Hub")
    return files


def _total_size(files: tuple[RemoteFile, ...]) -> int:
    return sum(f.size or 0 for f in files)


def _is_projector(filename: str) -> bool:
    return naming.basename(filename).lower().startswith("mmproj")
