"""The backend's endpoints: Shimmy-compatible (/api/...) and OpenAI-compatible (/v1/...)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

from flask import Blueprint, Response, current_app, jsonify, request

from . import generation
from .models import ModelRegistry
from .params import GenerationRequest, parse_chat, parse_completion, parse_generate, parse_json_body
from .settings import Settings
from .streaming import sse_response
from .waiting import Waiter

bp = Blueprint("backend", __name__)
# On /api/generate: a smoke test (the proxy's `verify: "load"`), which leaves the loaded models as they were
# (ModelRegistry.trying). A header, not a body field, so a Shimmy backend ignores it and just generates.
SMOKE_TEST_HEADER = "X-Smoke-Test"


@dataclass(frozen=True)
class Backend:
    """The app-wide services, kept on `app.extensions["backend"]`."""

    settings: Settings
    registry: ModelRegistry
    gpu_offload: bool


def _backend() -> Backend:
    return current_app.extensions["backend"]


@bp.get("/health")
def health():
    backend = _backend()
    loaded = backend.registry.loaded_ids()  # least recently used first
    models = {"total": len(backend.registry.list_models()), "loaded": len(loaded), "loaded_ids": loaded}
    return jsonify(status="ok", gpu_offload=backend.gpu_offload, models=models)


@bp.get("/v1/models")
def openai_models():
    data = [
        {"id": model.id, "object": "model", "created": int(model.modified), "owned_by": "local"}
        for model in _backend().registry.list_models()
    ]
    return jsonify(object="list", data=data)


@bp.get("/api/models")
def shimmy_models():
    models = [
        {"name": model.id, "size_bytes": model.size_bytes, "source": "discovered", "files": list(model.files)}
        for model in _backend().registry.list_models()
    ]
    return jsonify(models=models)


@bp.post("/api/generate")
def generate():
    parsed = parse_generate(parse_json_body(request.get_data()))
    smoke_test = request.headers.get(SMOKE_TEST_HEADER) == "1" and not parsed.stream
    with _backend().registry.trying(parsed.model) if smoke_test else contextlib.nullcontext():
        return _run(parsed, lambda lease: {"response": generation.generate_text(lease, parsed)},
                    generation.stream_generate)


@bp.post("/v1/completions")
def completions():
    parsed = parse_completion(parse_json_body(request.get_data()))
    return _run(parsed, lambda lease: generation.complete(lease, parsed), generation.stream_completion)


@bp.post("/v1/chat/completions")
def chat_completions():
    parsed = parse_chat(parse_json_body(request.get_data()))
    return _run(parsed, lambda lease: generation.chat(lease, parsed), generation.stream_chat)


def _run(
    parsed: GenerationRequest,
    answer: Callable[..., dict],
    stream: Callable[..., Iterator[str]],
) -> Response:
    """Lease the model, then answer in one piece or as an SSE stream that holds the lease; either
    stops between tokens once nobody waits for it (server.waiting)."""
    waiter = Waiter.of_request(request.environ, request.headers)
    lease = _backend().registry.acquire(parsed.model, waiter)
    if parsed.stream:
        response = sse_response(lease, lease.stream(lambda: stream(lease, parsed)))
        waiter.answering()
        return response
    with lease:
        return jsonify(lease.call(answer, lease))
