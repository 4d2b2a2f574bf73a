"""Ollama's API for the models this proxy holds: /api/version, /api/tags, /api/show, /api/ps, /api/pull and
/api/delete, in Ollama's shapes, with errors as Ollama's `{"error": "..."}` and our codes' HTTP statuses.
The generating endpoints are in proxy/routes/ollama_generate.py."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from core.errors import ErrorCode, ServiceError
from proxy.routes.auth import require_api_key
from proxy.errors import ProxyError
from proxy.ollama.listing import installed_models, tags_entry
from proxy.ollama.aliases import AliasStore, drop_name
from proxy.ollama.names import resolve_ollama_name
from proxy.ollama.show import show_model
from proxy.ollama.pull import ProgressLines, pull_body, source_digests
from proxy.pulls.events import Failed
from proxy.routes.body import check_json_tree, json_body
from proxy.routes.keep_alive_key import require_key_to_pin
from proxy.routes.ndjson import object_stream
from proxy.backend.upstream import call_backend
from proxy.services import services

bp = Blueprint("ollama", __name__)
# The Ollama release whose API shapes these endpoints follow (ollama/ollama api/types.go); clients such as
# Open WebUI ask for it to check that an Ollama answers.
OLLAMA_API_VERSION = "0.9.0"


def register_ollama_errors(blueprint: Blueprint | Flask) -> None:
    """Errors of the blueprint's views in Ollama's shape, `{"error": message}`, with our code's status."""

    @blueprint.errorhandler(ServiceError)
    def _ours(err: ServiceError):
        return jsonify(error=err.message), err.status, err.headers

    @blueprint.errorhandler(HTTPException)
    def _http(err: HTTPException):
        status = err.code or 500
        message = "request body too large" if status == 413 else (err.description or err.name)
        return jsonify(error=message), status


register_ollama_errors(bp)


def ollama_body() -> dict:
    """Raises: ProxyError invalid_request (no body, not a JSON object); auth_required (a keyless pin or unload)."""
    body = json_body()
    if not isinstance(body, dict):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "missing request body" if body is None else "invalid JSON body")
    check_json_tree(body, request.get_data())
    require_key_to_pin(body)
    return body


@bp.get("/api/version")
def version():
    return jsonify(version=OLLAMA_API_VERSION)


@bp.get("/api/tags")
def tags():
    return jsonify(models=[tags_entry(model) for model in installed_models(services().store)])


@bp.post("/api/show")
def show():
    body = ollama_body()
    store = services().store
    model, _ = resolve_ollama_name(store, body.get("model") or body.get("name"))
    return jsonify(show_model(store, model, services().backend.model_info(model)))


@bp.get("/api/ps")
def ps():
    running = call_backend("/api/running", None, [], method="GET").json().get("models")
    listed: dict[str, dict] = {}
    for model in installed_models(services().store):
        listed.setdefault(model["id"], model)  # its own entry, before the names copies gave it
    models = []
    for entry in running if isinstance(running, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        if entry["id"] not in listed:  # its file was deleted while loaded: still in memory, so still listed
            models.append({"name": entry["id"], "model": entry["id"], "size": entry.get("size_in_memory") or 0,
                           "digest": "", "details": {}, "expires_at": entry.get("expires_at"), "size_vram": 0,
                           "context_length": entry.get("n_ctx") or 0})
            continue
        shown, size = tags_entry(listed[entry["id"]]), entry.get("size_in_memory") or 0
        models.append({"name": shown["name"], "model": shown["model"], "size": size, "digest": shown["digest"],
                       "details": shown["details"], "expires_at": entry.get("expires_at"),
                       "size_vram": size if entry.get("gpu_layers") else 0,
                       "context_length": entry.get("n_ctx") or shown["details"].get("context_length") or 0})
    return jsonify(models=models)


@bp.post("/api/pull")
@require_api_key
def pull():
    body = pull_body(ollama_body())
    ticket = services().pull_service.start(body)
    if body.get("stream") is False:
        final = ticket.wait()
        if isinstance(final, Failed):
            return jsonify(error=final.error), final.http_status
        return jsonify(status="success")
    asked = ticket.request
    digests = source_digests(services().source, asked.repo, asked.revision)
    lines = ProgressLines(digests).lines(ticket.events())
    return object_stream(lines)


@bp.delete("/api/delete")
@require_api_key
def delete():
    body = ollama_body()
    store = services().store
    name = body.get("model") or body.get("name")
    model, files = resolve_ollama_name(store, name)
    if not drop_name(store, name, model, files):  # one of its names goes, the model stays
        return Response(status=200)
    pulling = {job.key for job in services().pulls.jobs() if not job.done}
    if pulling & set(files) or not store.delete_unless_busy(files):
        raise ProxyError(ErrorCode.MODEL_BUSY, f"{model} is being pulled or pushed; delete it when that ends")
    AliasStore(store.root).forget_model(model)
    return Response(status=200)
