"""Ollama's model-making endpoints: HEAD/POST /api/blobs/sha256:<hex>, POST /api/create, /api/copy and /api/push,
all behind PROXY_API_KEY, in Ollama's shapes and statuses (proxy/ollama/create.py does the work)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from proxy.errors import ErrorCode, ProxyError
from proxy.ollama.aliases import AliasStore, full_name
from proxy.ollama.create import Blobs, blob_digest, create_model
from proxy.ollama.names import resolve_ollama_name
from proxy.ollama.push import push_lines, push_target
from proxy.pulls.events import Failed
from proxy.routes.auth import require_api_key
from proxy.routes.ndjson import object_stream
from proxy.routes.ollama import ollama_body, register_ollama_errors
from proxy.services import services

bp = Blueprint("ollama_models", __name__)
register_ollama_errors(bp)


@bp.route("/api/blobs/<digest>", methods=["HEAD", "POST"])
@require_api_key
def blob(digest: str):
    """HEAD: 200 when the blob is here (uploaded, or an installed model's bytes), else 404. POST: the upload."""
    blobs, hex_digest = Blobs(services().store), blob_digest(digest)
    if blobs.has(hex_digest):
        return Response(status=200)
    if request.method == "HEAD":
        return Response(status=404)
    # A model file, not a JSON body: the free space bounds it (None would mean the app's 1 MiB limit).
    request.max_content_length = max(1, services().store.free_bytes())
    blobs.receive(hex_digest, request.stream, request.content_length)
    return Response(status=201)


@bp.post("/api/create")
@require_api_key
def create():
    body = ollama_body()
    name = create_model(services().store, body)
    if body.get("stream") is False:
        return jsonify(status="success")
    return object_stream([{"status": "parsing GGUF"}, {"status": f"using existing layer for {name}"},
                          {"status": "writing manifest"}, {"status": "success"}])


@bp.post("/api/copy")
@require_api_key
def copy():
    body = ollama_body()
    source, destination = body.get("source"), body.get("destination")
    if not isinstance(destination, str) or not destination.strip():
        raise ProxyError(ErrorCode.INVALID_REQUEST, "destination is required")
    model, _ = resolve_ollama_name(services().store, source)
    AliasStore(services().store.root).put(destination, model)
    return Response(status=200)


@bp.post("/api/push")
@require_api_key
def push():
    body = ollama_body()
    name = body.get("model") or body.get("name")
    model, _ = resolve_ollama_name(services().store, name)
    service = services().push_service
    prepared = service.prepare({"model": model, "target": push_target(full_name(name)), "stream": True})
    if body.get("stream") is False:
        final = service.run(prepared, lambda event: None)
        if isinstance(final, Failed):
            return jsonify(error=final.error), final.http_status
        return jsonify(status="success")
    return object_stream(push_lines(service.events(prepared), services().store, model))
