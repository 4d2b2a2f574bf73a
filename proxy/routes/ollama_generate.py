"""Ollama's generating endpoints: /api/chat, /api/generate, /api/embed and the older /api/embeddings,
translated to the backend's OpenAI-compatible ones (proxy/ollama/convert.py) and back."""
from __future__ import annotations

import time

from flask import Blueprint, jsonify

from proxy.errors import ErrorCode, ProxyError
from proxy.ollama.convert import (Translated, chat_request, context_options, embed_inputs, generate_request,
                                  keep_alive, metrics, normalized)
from proxy.ollama.names import resolve_ollama_name
from proxy.ollama.stream import ndjson_lines, piece, whole_answer
from proxy.ollama.tools import chat_template
from proxy.routes.ndjson import ndjson_response
from proxy.routes.ollama import ollama_body, register_ollama_errors
from proxy.backend.upstream import call_backend
from proxy.services import services

bp = Blueprint("ollama_generate", __name__)
register_ollama_errors(bp)


@bp.post("/api/chat")
def chat():
    body = ollama_body()
    name, (model, files) = body.get("model"), _resolve(body)
    if not body.get("messages"):  # Ollama's way to load (or, with keep_alive 0, unload) a model
        return _load_only(name, model, files, body, chat=True)
    template = lambda: chat_template(services().store, files)  # noqa: E731 (read only when tools or think ask)
    return _generation(name, files, chat_request(body, model, template), chat=True)


@bp.post("/api/generate")
def generate():
    body = ollama_body()
    name, (model, files) = body.get("model"), _resolve(body)
    if not body.get("prompt") and not body.get("suffix"):
        return _load_only(name, model, files, body, chat=False)
    return _generation(name, files, generate_request(body, model), chat=False)


@bp.post("/api/embed")
def embed():
    body = ollama_body()
    inputs, dimensions = embed_inputs(body, "input"), _dimensions(body)
    name, (model, files) = body.get("model"), _resolve(body)
    if not inputs:
        return jsonify(model=name, embeddings=[])
    started = time.monotonic()
    vectors, prompt_tokens = _embeddings(model, files, inputs, body)
    took = metrics(time.monotonic() - started, None, prompt_tokens, 0)
    return jsonify(model=name, embeddings=[normalized(v, dimensions) for v in vectors],
                   total_duration=took["total_duration"], load_duration=0, prompt_eval_count=prompt_tokens)


@bp.post("/api/embeddings")
def embeddings():
    body = ollama_body()
    inputs = embed_inputs(body, "prompt")
    model, files = _resolve(body)
    if not inputs:
        return jsonify(embedding=[])
    return jsonify(embedding=_embeddings(model, files, inputs, body)[0][0])


def _resolve(body: dict) -> tuple[str, list[str]]:
    """Raises: ProxyError invalid_request, model_not_found."""
    return resolve_ollama_name(services().store, body.get("model"))


def _generation(name: str, files: list[str], asked: Translated, chat: bool):
    """Raises: ProxyError from the backend before it answered."""
    started = time.monotonic()
    if asked.stream:
        asked.body["stream_options"] = {"include_usage": True}
    upstream = call_backend(asked.path, asked.body, files)
    if not asked.stream:
        return jsonify(whole_answer(upstream, name, chat, started))
    response = ndjson_response(ndjson_lines(upstream, name, chat, started))
    response.call_on_close(upstream.close)
    return response


def _load_only(name: str, model: str, files: list[str], body: dict, chat: bool):
    """Load the model (or unload it, with keep_alive 0) and answer as Ollama does, with done_reason load/unload.

    Raises:
        ProxyError: invalid_request, and the backend's model_too_large, model_load_failed, ...
    """
    alive = keep_alive(body)
    unload = alive.get("keep_alive") in (0, "0", "0s", "0m")
    context = {} if unload else {k: v for k, v in context_options(body).items() if k == "n_ctx"}
    call_backend("/api/unload" if unload else "/api/load", {"model": model, **alive, **context}, files).json()
    done = piece(name, "", chat, done=True)
    done["done_reason"] = "unload" if unload else "load"
    return jsonify(done)


def _embeddings(model: str, files: list[str], inputs: list[str], body: dict) -> tuple[list[list[float]], int]:
    """The backend's vectors for `inputs`, in order, and the prompt tokens it counted.

    Raises:
        ProxyError: the backend's error, or backend_unavailable for an answer of another shape.
    """
    answer = call_backend("/v1/embeddings", {"model": model, "input": inputs, **keep_alive(body)}, files).json()
    try:
        data = sorted(answer["data"], key=lambda item: item["index"])
        vectors = [[float(x) for x in item["embedding"]] for item in data]
    except (KeyError, TypeError, ValueError) as err:
        raise ProxyError(ErrorCode.BACKEND_UNAVAILABLE, "the backend answered embeddings of an unknown shape") from err
    if len(vectors) != len(inputs):
        raise ProxyError(ErrorCode.BACKEND_UNAVAILABLE, f"the backend answered {len(vectors)} embeddings for "
                         f"{len(inputs)} inputs")
    usage = answer.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return vectors, tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0


def _dimensions(body: dict) -> int | None:
    """Raises: ProxyError invalid_request."""
    value = body.get("dimensions")
    if value in (None, 0):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProxyError(ErrorCode.INVALID_REQUEST, "dimensions must be a positive integer")
    return value
