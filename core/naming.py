"""GGUF file names: quant tags, split sets, safe names, model ids and which model a name stands for.

One copy of each rule, for the proxy and the backend alike.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable

import gguf

# Known quant names come from the gguf package: file types (Q4_K_M, IQ4_XS, ...) and tensor types.
QUANT_NAMES: frozenset[str] = frozenset(
    {ft.name.removeprefix("MOSTLY_") for ft in gguf.LlamaFileType}
    | {qt.name for qt in gguf.GGMLQuantizationType}
) - {"ALL_F32", "GUESSED"}
# Longest first, so Q4_K_M wins over a bare K_M-less match such as Q4_K.
_QUANTS_BY_LENGTH = sorted(QUANT_NAMES, key=len, reverse=True)
_SPLIT_RE = re.compile(r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf\Z", re.IGNORECASE)
_SEPARATORS = ".-_"
# Controls (C0, C1), format characters (bidi overrides and isolates, zero-width ones, soft hyphen, BOM),
# lone surrogates (no file system can store them) and line or paragraph separators: each hides or
# rearranges what a name shows a person, or breaks it as a path.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@dataclass(frozen=True)
class SplitPart:
    base: str  # file name without the -0000i-of-0000n.gguf suffix
    index: int
    count: int


def split_part(filename: str) -> SplitPart | None:
    """The split-set position of `name-00001-of-00003.gguf`, or None for a single file."""
    match = _SPLIT_RE.match(basename(filename))
    if not match:
        return None
    return SplitPart(match["base"], int(match["index"]), int(match["count"]))


def basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def has_unsafe_characters(name: str) -> bool:
    """Whether `name` holds a character no file name or model id may have (see _UNSAFE_CATEGORIES)."""
    return any(unicodedata.category(c) in _UNSAFE_CATEGORIES for c in name)


def _is_one_component(name: str) -> bool:
    """A single path component that stays one, made of characters that show what they are."""
    return name not in ("", ".", "..") and "/" not in name and "\\" not in name and not has_unsafe_characters(name)


def is_safe_name(name: str) -> bool:
    """The rule for every file name and model id, given by a client or listed by a repo: one path component
    (_is_one_component) that is not hidden (`.staging`, `.locks` are the store's), does not start with `~`,
    and has no `%` (an encoded separator such as `..%2f`)."""
    return _is_one_component(name) and not name.startswith((".", "~")) and "%" not in name


def is_safe_path(path: str) -> bool:
    """A relative path in a repo made of safe names (is_safe_name), which cannot escape a folder."""
    return all(is_safe_name(part) for part in path.split("/"))


def is_gguf(filename: str) -> bool:
    return filename.lower().endswith(".gguf")


def model_id(filename: str) -> str:
    """The id a model is served under: the file name without `.gguf` and without its split suffix."""
    part = split_part(filename)
    if part:
        return part.base
    name = basename(filename)
    return name[: -len(".gguf")] if is_gguf(name) else name


def quant_of(name: str) -> str | None:
    """The quant tag a file or model name ends with (`Q4_K_M`), upper-cased, or None."""
    stem = model_id(name).upper()
    for quant in _QUANTS_BY_LENGTH:
        if stem.endswith(quant) and len(stem) > len(quant) and stem[-len(quant) - 1] in _SEPARATORS:
            return quant
    return None


def strip_quant(name: str) -> str:
    """`phi-3-mini.Q4_K_M` -> `phi-3-mini`; a name without a known quant suffix is returned as is."""
    stem = model_id(name)
    quant = quant_of(stem)
    return stem[: -len(quant) - 1] if quant else stem


class AmbiguousModelName(LookupError):
    """A name without quant suffix that matches several models; `ids` are theirs, sorted."""

    def __init__(self, name: str, ids: list[str]):
        super().__init__(f"model {name!r} is ambiguous: it matches {', '.join(ids)}; name one of them in full")
        self.ids = ids


def resolve_model_id(ids: Iterable[str], name: str) -> str | None:
    """The model id `name` stands for among `ids`, or None when none matches.

    `name` may be the id, its file name (a split set's by any part), or the id without its quant suffix
    when exactly one model has that stem (docs/api.md, model id). Ids are case-sensitive, as file names are.

    Raises:
        AmbiguousModelName: the name without quant suffix matches several models.
    """
    wanted = model_id(name.strip())
    ids = set(ids)
    if wanted in ids:
        return wanted
    by_stem = sorted(i for i in ids if strip_quant(i) == wanted)
    if len(by_stem) > 1:
        raise AmbiguousModelName(name, by_stem)
    return by_stem[0] if by_stem else None


# Sources: a model named with a scheme (`ollama://...`) comes from that scheme's source; a name without one
# (`owner/name`) from the Hub's.
HUB_SCHEME = "hf"
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(model: str) -> str | None:
    """The scheme `model` is written with, lowercased; None for a name without one."""
    match = _SCHEME_RE.match(model)
    return match.group(1).lower() if match else None


def source_scheme(source: str | None) -> str:
    """The scheme of the source a file came from, as provenance records it: the Hub's for no reference."""
    return (scheme_of(source) if source else None) or HUB_SCHEME
