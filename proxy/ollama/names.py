"""Model names as Ollama users write them (`gemma3:270m`, `hf.co/owner/name:Q4_K_M`), and as this proxy's own
API names them (docs/api.md, Generating): which installed model each stands for, and how to show one.

Ollama's rule: `name[:tag]` and `namespace/name[:tag]` are models of an Ollama registry (`registry.ollama.ai`
and `library` by default), `host/namespace/name:tag` of another host, `hf.co/owner/name:QUANT` of the Hub;
a name without a tag means `:latest`. Ours first: a model id, file name or alias, then a name as pulled.
"""
from __future__ import annotations

from typing import Mapping

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.ollama.aliases import AliasStore
from proxy.pulls.pulled_names import is_pulled_name, model_id_pulled_as
from proxy.sources.reference import OLLAMA_HOST, is_registry_reference
from proxy.models_dir.store import ModelStore

HUB_ALIASES = ("huggingface.co/", "hf.co/")
LATEST = ":latest"


def resolve_model(store: ModelStore, name: str) -> tuple[str, list[str]]:
    """The model id a name of this proxy's API stands for, and its installed files ([] when none: the backend
    judges an id it may know that MODELS_DIR does not hold).

    Raises:
        ProxyError: model_not_found (a name as pulled that matches none, or several).
    """
    if is_pulled_name(name):
        model = model_id_pulled_as(store, name)
        return model, store.files_of_model(model)
    files = store.files_of_model(name)
    return (naming.model_id(files[0]) if files else name), files


def resolve_ollama_name(store: ModelStore, name: str) -> tuple[str, list[str]]:
    """The installed model an Ollama name stands for: its id and files.

    Raises:
        ProxyError: invalid_request (empty), model_not_found (none matches, or several).
    """
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise ProxyError(ErrorCode.INVALID_REQUEST, "model is required")
    named = aliased(store, name)
    if named is not None:  # a name /api/create or /api/copy gave
        return named, store.files_of_model(named)
    hub = _hub_name(name)
    if hub:  # its own message: what the repo has installed, or which several it matches
        return resolve_model(store, hub)
    for candidate in (name, *_registry_forms(name)):
        try:
            model, files = resolve_model(store, candidate)
        except ProxyError:
            continue
        if files:
            return model, files
    raise ProxyError(ErrorCode.MODEL_NOT_FOUND, f"model '{name}' not found, try pulling it first "
                     f"(POST /api/pull {{\"model\": \"{name}\"}}; GET /api/tags lists the installed models)")


def aliased(store: ModelStore, name: str) -> str | None:
    """The installed model a name made by /api/create or /api/copy stands for (proxy/ollama/aliases.py)."""
    return AliasStore(store.root).model_of(name, {naming.model_id(f) for f in store.installed_files()})


def _hub_name(name: str) -> str | None:
    """`hf.co/owner/name[:QUANT]` as this proxy's pulls name it; None for a name of another source."""
    for alias in HUB_ALIASES:
        if name.lower().startswith(alias):
            rest = name[len(alias):]
            return "hf.co/" + (rest[: -len(LATEST)] if rest.lower().endswith(LATEST) else rest)
    return None


def _registry_forms(name: str) -> list[str]:
    """The registry references an Ollama name may stand for: Ollama's own, and for a name with a host, an
    OCI registry's (what `oci://` pulls record)."""
    if is_registry_reference(name):
        return []
    forms = [f"ollama://{name}"]
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        forms.append(f"oci://{name}")
    return forms


def ollama_name(entry: Mapping) -> str:
    """How /api/tags shows an installed model (`entry` as ModelStore.describe_installed lists it), in Ollama's
    shortest form, which resolve_ollama_name resolves back: `gemma3:270m`, `host/ns/name:tag`,
    `hf.co/owner/name:QUANT`, or the model id for a file nobody pulled."""
    source, repo = entry.get("source"), entry.get("repo")
    if isinstance(source, str) and source.startswith("ollama://"):
        short = source.removeprefix("ollama://").removeprefix(f"{OLLAMA_HOST}/")
        return short.removeprefix("library/")
    if isinstance(source, str) and source.startswith("oci://"):
        return source.removeprefix("oci://")
    if isinstance(repo, str) and repo and "://" not in repo:
        quant = naming.quant_of(entry["filename"])
        return f"hf.co/{repo}:{quant or 'latest'}"
    return entry["id"]


def pulled_as(entry: Mapping) -> str:
    """What an installed model was pulled as, in this proxy's API (`owner/name:QUANT`, a registry reference), or
    its id for a file nobody pulled."""
    source, repo = entry.get("source"), entry.get("repo")
    if isinstance(source, str) and source:
        return source
    if isinstance(repo, str) and repo:
        quant = naming.quant_of(entry["filename"])
        return f"{repo}:{quant}" if quant else repo
    return entry["id"]
