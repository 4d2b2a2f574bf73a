"""The backend's endpoints: Shimmy-compatible (/api/...), OpenAI-compatible (/v1/...) and residency."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, jsonify, request

from core.wire import SMOKE_TEST_HEADER

from . import generation
from ..engine.embeddings import check_inputs, embed
from ..engine.gauges import model_stats
from .shapes import Shapes, shimmy_stream
from ..residency.loading import LoadedModel
from ..residency.models import Residency
from .params import (GenerationRequest, context_fields, keep_alive, model_name, parse_chat, parse_completion, parse_embeddings,
                     parse_generate, parse_json_body)
from ..engine.grammar_limits import check_compiles
from ..engine.sampling import grammar_for
from ..settings import Settings
from .streaming import sse_response
from ..engine.client import Waiter

bp = Blueprint("backend", __name__)
# SMOKE_TEST_HEADER on /api/generate: the proxy's `verify: "load"`, which leaves the loaded models as they were
# (Residency.trying). A header, not a body field, so a Shimmy backend ignores it and just generates.


@dataclass(frozen=True)
class Backend:
    """The app-wide services, kept on `app.extensions["backend"]`."""

    settings: Settings
    residency: Residency
    gpu_offload: bool


def _backend() -> Backend:
    return current_app.extensions["backend"]


@bp.get("/health")
def health():
    backend = _backend()
    running = backend.residency.running()  # least recently used first
    models = {"total": len(backend.residency.list_models()), "loaded": len(running),
              "loaded_ids": [loaded.model.id for loaded in running]}
    busy, waiting, total = _occupancy(running)
    return jsonify(status="ok", gpu_offload=backend.gpu_offload, models=models,
                   slots={"total": total, "busy": busy}, queue=waiting)


@bp.get("/stats")
def stats():
    residency = _backend().residency
    # Each engine's gauges, read without its lock: a scrape never waits on a decode step.
    loads = [(loaded, loaded.engine.gauges()) for loaded in residency.running()]
    models = [model_stats(loaded.model.id, load, loaded.engine.counters) for loaded, load in loads]
    slots = {"total": sum(loaded.engine.n_slots for loaded, _ in loads), "busy": sum(g.running for _, g in loads)}
    cache = getattr(residency, "prompt_cache", None)  # hits, misses and bytes a tier (docs/api.md, Prompt cache)
    return jsonify(**residency.stats.to_dict(), slots=slots, queue=sum(g.waiting for _, g in loads), models=models,
                   prompt_cache=cache.to_dict() if cache is not None else None)


@bp.get("/v1/models")
def openai_models():
    data = [
        {"id": model.id, "object": "model", "created": int(model.modified), "owned_by": "local"}
        for model in _backend().residency.list_models()
    ]
    return jsonify(object="list", data=data)


@bp.get("/api/models")
def shimmy_models():
    models = [
        {"name": model.id, "size_bytes": model.size_bytes, "source": "discovered", "files": list(model.files)}
        for model in _backend().residency.list_models()
    ]
    return jsonify(models=models)


@bp.get("/api/running")
def running():
    return jsonify(models=[_running_entry(loaded) for loaded in reversed(_backend().residency.running())])


@bp.post("/api/load")
def load():
    body = parse_json_body(request.get_data())
    waiter = Waiter.of_request(request.environ, request.headers)
    asked = keep_alive(body)
    n_ctx = context_fields(body)["n_ctx"]
    pin = asked is not None and asked.forever
    with _backend().residency.acquire(model_name(body), waiter, asked, pin=pin, n_ctx=n_ctx) as lease:
        return jsonify(id=lease.model.id, status="loaded", size_in_memory=lease.loaded.size_bytes,
                       n_ctx=lease.n_ctx)


@bp.post("/api/unload")
def unload():
    model_id, status = _backend().residency.unload(model_name(parse_json_body(request.get_data())))
    return jsonify(id=model_id, status=status)  # "unloading": when the requests holding it end, not waited for


@bp.post("/api/generate")
def generate():
    parsed = parse_generate(parse_json_body(request.get_data()))
    smoke_test = request.headers.get(SMOKE_TEST_HEADER) == "1" and not parsed.stream
    with _backend().residency.trying(parsed.model) if smoke_test else contextlib.nullcontext():
        return _run(parsed, None)


@bp.post("/v1/completions")
def completions():
    parsed = parse_completion(parse_json_body(request.get_data()))
    return _run(parsed, Shapes)


@bp.post("/v1/chat/completions")
def chat_completions():
    parsed = parse_chat(parse_json_body(request.get_data()))
    return _run(parsed, Shapes)


@bp.post("/v1/embeddings")
def embeddings():
    parsed = parse_embeddings(parse_json_body(request.get_data()))
    check_inputs(parsed.inputs)
    waiter = Waiter.of_request(request.environ, request.headers)
    with _backend().residency.acquire(parsed.model, waiter, parsed.keep_alive) as lease:
        handle = lease.loaded.llama
        inputs = [handle.tokenize(text, add_bos=True, special=False) for text in parsed.inputs]
        vectors = embed(lease.engine, handle, inputs, waiter)  # in groups, between generation steps
        n_tokens = sum(map(len, inputs))
        data = [{"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)]
        return jsonify(object="list", data=data, model=lease.model.id,
                       usage={"prompt_tokens": n_tokens, "total_tokens": n_tokens})


def _run(parsed: GenerationRequest, shapes: type[Shapes] | None) -> Response:
    """Lease the model and run the request through its engine: one answer, or an SSE stream that holds the
    lease; either stops within a step once nobody waits for it (server.engine.jobs.JobEvents). `shapes` None: Shimmy's."""
    grammar = grammar_for(parsed.response_format)  # a bad schema is a 400 before any model loads
    waiter = Waiter.of_request(request.environ, request.headers)
    lease = _backend().residency.acquire(parsed.model, waiter, parsed.keep_alive, n_ctx=parsed.n_ctx)
    try:
        job = generation.make_job(lease, parsed, grammar)
        # A grammar llama.cpp refuses (the response format's or the tools') is a 400, not an error mid-stream.
        where = "response_format" if job.sampling.grammar == grammar else "tools"
        check_compiles(lease.loaded.llama.vocab, job.sampling.grammar, where)
        shape = None if shapes is None else shapes(lease.model.id, parsed.kind == "chat", parsed.include_usage,
                                                    generation.agent_output(lease, job, _backend().residency.stats))
        events = generation.run(lease, job)  # last: once submitted, the job is ended by closing its events
    except BaseException:
        lease.release()
        raise
    if parsed.stream:
        body = shimmy_stream(events) if shape is None else shape.stream(events)
        response = sse_response(lease, body, events.close)
        waiter.answering()
        return response
    with lease, contextlib.closing(events):
        text, end = generation.collect(events)
        return jsonify({"response": text} if shape is None else shape.whole(text, end))


def _occupancy(running: list[LoadedModel]) -> tuple[int, int, int]:
    busy = waiting = total = 0
    for loaded in running:
        slots_busy, queued = loaded.engine.occupancy()
        busy, waiting, total = busy + slots_busy, waiting + queued, total + loaded.engine.n_slots
    return busy, waiting, total


def _running_entry(loaded: LoadedModel) -> dict:
    busy, queued = loaded.engine.occupancy()
    expires = loaded.expires_at()
    return {"id": loaded.model.id, "size_in_memory": loaded.size_bytes, "gpu_layers": loaded.gpu_layers,
            "n_ctx": loaded.n_ctx,
            "slots": {"total": loaded.engine.n_slots, "busy": busy}, "queue": queued,
            "expires_at": None if expires is None else _iso(expires), "loaded_at": _iso(loaded.loaded_at)}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")
