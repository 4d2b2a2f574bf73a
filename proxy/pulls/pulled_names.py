"""Which installed model a name as pulled stands for: `owner/name[:QUANT]`, `hf.co/...`, `hf://...`, or a
registry reference, looked up in the installed models' provenance (docs/api.md, Generating).

Model ids and file names never hold a `/` (core.naming.is_safe_name), so a name with one is a pulled name;
anything else is left to the backend's rule for ids (core.naming.resolve_model_id).
"""
from __future__ import annotations

import json
from typing import Iterable

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.sources.reference import HUB_PREFIXES, canonical_reference, is_source_reference
from proxy.models_dir.store import ModelStore


def is_pulled_name(name: str) -> bool:
    return "/" in name


def model_id_pulled_as(store: ModelStore, name: str) -> str:
    """The id of the installed model in `store` a name as pulled stands for.

    Raises:
        ProxyError: model_not_found (none, or several).
    """
    return resolve_pulled_name(store.installed_records(), name)


def backend_model_id(store: ModelStore, name: str) -> str:
    """The model id the backend knows for `model` as a client names it: a name as pulled resolved here, any other
    name (an id, file name or alias) as it came, for the backend's own rule.

    Raises:
        ProxyError: model_not_found (a name as pulled that no installed model, or several, match).
    """
    return model_id_pulled_as(store, name) if is_pulled_name(name) else name


def resolve_pulled_name(installed: Iterable[dict], name: str) -> str:
    """The model id of the one installed model `name` names; `installed` as ModelStore.describe_installed
    lists them (`id`, `filename` and the provenance record's fields).

    A registry reference matches the record's `source`; a Hub name its `repo` (case-insensitive, as the Hub's
    ids are) and, with `:QUANT`, the quant of the file name.

    Raises:
        ProxyError: model_not_found when nothing installed matches (saying the pull to make, and what the
            repo has installed), or several models do (listing them).
    """
    name = name.strip()
    if is_source_reference(name):
        source = _canonical(name)
        return _only_one(name, source, None, _by_id(e for e in installed if e.get("source") == source), {})
    repo, _, quant = _hub_name(name).partition(":")
    from_repo = _by_id(e for e in installed if (e.get("repo") or "").lower() == repo.lower())
    matching = {i: f for i, f in from_repo.items() if not quant or naming.quant_of(f) == quant.upper()}
    return _only_one(name, f"{repo}:{quant.upper()}" if quant else repo, repo, matching, from_repo)


def _only_one(name: str, pull_as: str, repo: str | None, matching: dict[str, str], from_repo: dict[str, str]) -> str:
    """Raises: ProxyError model_not_found (none or several)."""
    if len(matching) == 1:
        return next(iter(matching))
    if matching:
        raise ProxyError(ErrorCode.MODEL_NOT_FOUND,
                         f"model {name!r} is ambiguous: it matches {_listing(matching, repo)}; "
                         "name one of them")
    installed = f" (installed from {repo}: {_listing(from_repo, repo)})" if from_repo else ""
    # The backend's message for an unknown model (server.residency.models.not_installed_message), with the exact pull.
    raise ProxyError(ErrorCode.MODEL_NOT_FOUND, f"model {name!r} is not installed{installed}; pull it first: "
                     f"POST /v1/api/pull {json.dumps({'model': pull_as})} (GET /v1/models lists the installed "
                     "models)")


def _hub_name(name: str) -> str:
    for prefix in HUB_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _by_id(entries: Iterable[dict]) -> dict[str, str]:
    """Model id -> one of its file names (the parts of a split set share the id and the quant)."""
    return {entry["id"]: entry["filename"] for entry in entries}


def _listing(models: dict[str, str], repo: str | None) -> str:
    """`id (repo:QUANT)`, ...: each model with the pulled name that picks it, where there is one."""
    return ", ".join(f"{i} ({repo}:{naming.quant_of(f)})" if repo and naming.quant_of(f) else i
                     for i, f in sorted(models.items()))


def _canonical(reference: str) -> str:
    """The canonical form provenance records (`ollama://gemma3:270m` is `ollama://registry.ollama.ai/...`)."""
    try:
        return canonical_reference(reference)
    except ProxyError:
        return reference
