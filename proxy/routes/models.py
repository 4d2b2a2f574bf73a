"""Installed models: the OpenAI list, the list with provenance, and delete."""
from __future__ import annotations

from flask import Blueprint, jsonify

from core import naming
from proxy.routes.auth import require_api_key
from proxy.errors import ErrorCode, ProxyError
from proxy.llama_server.choice import installed_model
from proxy.pulls.request import parse_repo_id
from proxy.routes.body import json_body
from proxy.models_dir.usage import iso_seconds
from proxy.services import services

bp = Blueprint("models", __name__)


@bp.get("/v1/models")
def openai_models():
    return jsonify(object="list", data=_listed_models())


@bp.get("/v1/models/<path:name>")
def openai_model(name: str):
    """One model of the list in OpenAI's shape (the SDK's models.retrieve): by its id, or by a name as pulled.

    Raises:
        ProxyError: model_not_found (404, in OpenAI's shape as every /v1/models answer).
    """
    listed = {entry["id"]: entry for entry in _listed_models()}
    if name not in listed:
        name = installed_model(name)[0]
    entry = listed.get(name) or {"id": name}  # installed a moment ago
    return jsonify({"object": "model", "created": 0, "owned_by": "local", **entry})


def _listed_models() -> list[dict]:
    """The backend's list, plus installed files it does not list yet (or at all, when it is down)."""
    listed = services().backend.model_ids()
    seen = {entry["id"] for entry in listed}
    for filename in services().store.installed_files():
        model = naming.model_id(filename)
        if model not in seen:
            seen.add(model)
            listed.append({"id": model, "object": "model", "owned_by": "local"})
    return listed


@bp.get("/v1/api/models")
def installed_models():
    used = services().usage.last_used()
    return jsonify(models=services().store.describe_installed(
        {name: iso_seconds(when) for name, when in used.items()}))


@bp.delete("/v1/api/delete")
@require_api_key
def delete_model():
    name = _delete_target(json_body())
    store = services().store
    files = store.files_of_model(name)
    # Checked before "absent": a model whose first pull is still running is busy, not unknown.
    if _being_pulled(name, files):
        raise ProxyError(ErrorCode.MODEL_BUSY, f"{name} is being pulled; delete it when the pull ends")
    if not files:
        raise ProxyError(ErrorCode.MODEL_NOT_FOUND, f"no installed model named {name}")
    if not store.delete_unless_busy(files):
        raise ProxyError(ErrorCode.MODEL_BUSY, f"{name} is being pulled or pushed; delete it when that ends")
    return jsonify(status="deleted", files=files)


def _being_pulled(name: str, files: list[str]) -> bool:
    """A running or queued pull of one of `files`, of the file or model `name` names, or from repo `name`."""
    for job in services().pulls.jobs():
        if job.done:
            continue
        if job.key in files or naming.model_id(job.key) == naming.model_id(name) or job.repo.lower() == name.lower():
            return True
    return False


def _delete_target(body) -> str:
    """Raises: ProxyError invalid_request, unsafe_filename."""
    if not isinstance(body, dict):
        raise ProxyError(ErrorCode.INVALID_REQUEST, 'the body must be {"filename": ...} or {"model": ...}')
    name = body.get("filename") if body.get("filename") is not None else body.get("model")
    if not isinstance(name, str) or not name:
        raise ProxyError(ErrorCode.INVALID_REQUEST, '"filename" or "model" must be a non-empty string')
    if "/" in name and body.get("filename") is None:
        return parse_repo_id(name)  # every installed file pulled from this repo
    if not naming.is_safe_name(name):
        raise ProxyError(ErrorCode.UNSAFE_FILENAME, "give the installed file name or model id: not a path, and without "
                         "control or invisible characters")
    return name
