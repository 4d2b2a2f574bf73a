"""Installed models as Ollama lists them (/api/tags, /api/ps entries; /api/show is proxy/ollama/show.py): one
entry a model (the parts of a split set together), named as Ollama users write them (proxy/ollama/names.py)."""
from __future__ import annotations

import datetime

from proxy.ollama.aliases import AliasStore
from proxy.ollama.names import ollama_name
from proxy.models_dir.store import ModelStore


def installed_models(store: ModelStore) -> list[dict]:
    """ModelStore.describe_installed's entries grouped by model id (the first part's record, the sizes and
    parameter counts of all parts summed), each with its Ollama `name`; a name two models would share is
    replaced by their ids, so that every name resolves to its model. Names given by /api/create and /api/copy
    follow, one entry each (a model's first entry is its own)."""
    models: dict[str, dict] = {}
    for entry in store.describe_installed():
        model = models.get(entry["id"])
        if model is None:
            models[entry["id"]] = {**entry, "files": [entry["filename"]], "details": dict(entry["details"]),
                                   "mtime": None if entry.get("pulled_at") else _mtime(store, entry["filename"])}
            continue
        model["files"].append(entry["filename"])
        model["size"] = (model["size"] or 0) + (entry["size"] or 0)
        parts = (model["details"].get("parameters"), entry["details"].get("parameters"))
        if all(isinstance(p, int) for p in parts):
            model["details"]["parameters"] = sum(parts)
    names: dict[str, int] = {}
    for model in models.values():
        model["name"] = ollama_name(model)
        names[model["name"]] = names.get(model["name"], 0) + 1
    for model in models.values():
        if names[model["name"]] > 1:
            model["name"] = model["id"]
    return list(models.values()) + _named(store, models)


def _named(store: ModelStore, models: dict[str, dict]) -> list[dict]:
    """The names /api/create and /api/copy gave (proxy/ollama/aliases.py): a model nobody pulled takes its first
    such name instead of its id (what /api/create made), every other name is one more entry, as Ollama lists
    copies."""
    extra = []
    for name, model_id in AliasStore(store.root).names(models).items():
        model = models[model_id]
        if model["name"] == model["id"] and not model.get("repo") and not model.get("source"):
            model["name"] = name
        else:
            extra.append({**model, "name": name})
    return extra


def tags_entry(model: dict) -> dict:
    """One /api/tags entry: ollama/ollama api/types.go ListModelResponse."""
    return {"name": model["name"], "model": model["name"], "modified_at": modified_at(model),
            "size": model["size"] or 0, "digest": model.get("sha256") or "", "details": details(model)}


def details(model: dict) -> dict:
    """Ollama's ModelDetails from what the GGUF header says."""
    found = model["details"]
    family = found.get("architecture") or ""
    parameters = found.get("parameters")
    return {"parent_model": "", "format": "gguf", "family": family, "families": [family] if family else None,
            "parameter_size": human_number(parameters) if isinstance(parameters, int) else "",
            "quantization_level": found.get("quantization") or "",
            **({"context_length": found["context_length"]} if found.get("context_length") else {})}


def human_number(count: int) -> str:
    """Ollama's format.HumanNumber: 268098176 -> 268.10M, 7000000000 -> 7B."""
    for size, unit, decimals in ((10**9, "B", 1), (10**6, "M", 2)):
        if count >= size:
            number = count / size
            return f"{number:.0f}{unit}" if number == int(number) else f"{number:.{decimals}f}{unit}"
    return f"{count / 1000:.0f}K" if count >= 1000 else str(count)


def _mtime(store: ModelStore, filename: str) -> float:
    try:
        return store.final_path(filename).stat().st_mtime
    except OSError:
        return 0.0


def modified_at(model: dict) -> str:
    """When the model was pulled, else its file's modification time; RFC 3339."""
    if model.get("pulled_at"):
        return model["pulled_at"]
    return datetime.datetime.fromtimestamp(model.get("mtime") or 0, datetime.timezone.utc).isoformat()
