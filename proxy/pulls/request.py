"""A pull request body, checked field by field before anything touches the network or the disk."""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Mapping

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.models_dir.staging import MAX_FILENAME_BYTES
from proxy.sources.reference import HUB_PREFIXES, canonical_reference, is_source_reference, scheme_of

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}\Z")
_QUANT_RE = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")
_REVISION_RE = re.compile(r"^[A-Za-z0-9._/-]{1,255}\Z")


@dataclass(frozen=True)
class PullRequest:
    repo: str
    filename: str | None = None
    quant: str | None = None
    revision: str = "main"
    stream: bool = True
    verify: str = "checksum"
    run_async: bool = False
    replace: bool = False  # may replace a file of the same name installed from another repo
    # Pins of a declared model (proxy/declared/manifest.py), never of a pull body: the sha256 of the file (of the
    # first part of a split set), and (filename, sha256) of each part.
    pinned_sha256: str | None = None
    pinned_parts: tuple[tuple[str, str], ...] = ()


def parse_pull_request(body: Any) -> PullRequest:
    """Raises: ProxyError invalid_request, invalid_repo_id, unsafe_filename, not_gguf."""
    if not isinstance(body, dict):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "the body must be a JSON object")
    model = _field(body, "model", str, required=True)
    repo, model_quant = parse_model(model)
    quant = _field(body, "quant", str) or model_quant or None
    if quant is not None and not _QUANT_RE.match(quant):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "quant must be a quant tag such as Q4_K_M")
    filename = _field(body, "filename", str)
    if filename is not None:
        filename = check_filename(filename)
    revision = parse_revision(_field(body, "revision", str))
    verify = _field(body, "verify", str) or "checksum"
    if verify not in ("checksum", "load"):
        raise ProxyError(ErrorCode.INVALID_REQUEST, 'verify must be "checksum" or "load"')
    stream = _field(body, "stream", bool)
    run_async = _field(body, "async", bool)
    replace = _field(body, "replace", bool)
    return PullRequest(repo=repo, filename=filename, quant=quant.upper() if quant else None,
                       revision=revision, stream=True if stream is None else stream,
                       verify=verify, run_async=bool(run_async), replace=bool(replace))


def parse_model(model: str) -> tuple[str, str | None]:
    """What `model` names: a Hub repo id with the quant it may carry, or a registry source's canonical
    reference (its tag is no quant).

    Raises:
        ProxyError: invalid_repo_id, unsupported_source.
    """
    if is_source_reference(model):
        return canonical_reference(model), None
    hub = next((model[len(p):] for p in HUB_PREFIXES if model.lower().startswith(p)), model)
    if scheme_of(hub) is not None:
        canonical_reference(hub)  # raises unsupported_source, naming the schemes there are
    repo, _, quant = hub.partition(":")
    return parse_repo_id(repo), quant or None


def parse_repo_id(repo: str) -> str:
    """Raises: ProxyError invalid_repo_id."""
    if not _REPO_RE.match(repo) or ".." in repo or "--" in repo:
        raise ProxyError(ErrorCode.INVALID_REPO_ID, "model must be a Hub repo id: owner/name, letters, digits, . _ -")
    return repo


def parse_revision(revision: str | None) -> str:
    """Raises: ProxyError invalid_request."""
    revision = revision or "main"
    if not _REVISION_RE.match(revision) or ".." in revision:
        raise ProxyError(ErrorCode.INVALID_REQUEST, "revision must be a branch, tag or commit id")
    return revision


def check_filename(filename: str) -> str:
    """A relative path inside a repo that cannot escape MODELS_DIR once installed.

    Raises:
        ProxyError: unsafe_filename, not_gguf.
    """
    if not naming.is_safe_path(filename):  # before the length: a lone surrogate cannot be encoded
        raise ProxyError(ErrorCode.UNSAFE_FILENAME, "filename must be a relative path inside the repo, without "
                         "'..', hidden parts, '%', backslashes or control characters")
    if len(naming.basename(filename).encode()) > MAX_FILENAME_BYTES:
        raise ProxyError(ErrorCode.UNSAFE_FILENAME, f"the file name is too long: at most {MAX_FILENAME_BYTES} bytes "
                         "fit in MODELS_DIR once staged")
    if not naming.is_gguf(filename):
        raise ProxyError(ErrorCode.NOT_GGUF, "only .gguf files can be pulled")
    return filename


def check_repo_allowed(repo: str, patterns: tuple[str, ...]) -> None:
    """Raises: ProxyError repo_not_allowed when ALLOWED_REPOS is set and matches nothing.

    A pattern with a scheme matches registry references (canonical), one without matches Hub repo ids."""
    # Hub repo ids are case-insensitive, so the patterns are too.
    by_scheme = is_source_reference(repo)
    if patterns and not any(fnmatch.fnmatchcase(repo.lower(), p.lower()) for p in patterns
                            if (scheme_of(p) is not None) == by_scheme):
        raise ProxyError(ErrorCode.REPO_NOT_ALLOWED, "this repo is not in ALLOWED_REPOS")


def who_asked(request: PullRequest | Any) -> tuple[str, str | None]:
    """Repo and file name to show for a pull, from its request or, when that did not parse, its body."""
    if isinstance(request, PullRequest):
        return request.repo, naming.basename(request.filename) if request.filename else None
    body = request if isinstance(request, Mapping) else {}
    model, filename = body.get("model"), body.get("filename")
    repo = str(model) if not isinstance(model, str) or "://" in model else model.partition(":")[0]
    return repo, naming.basename(filename) if isinstance(filename, str) and filename else None


def _field(body: dict, name: str, kind: type, required: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        if required:
            raise ProxyError(ErrorCode.INVALID_REQUEST, f"'{name}' is required")
        return None
    # bool is an int subclass; neither should pass for the other.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ProxyError(ErrorCode.INVALID_REQUEST, f"'{name}' must be a {kind.__name__}")
    return value
