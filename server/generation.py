"""Generation on a leased model through llama-cpp-python, in the Shimmy and OpenAI shapes.

These run on the model's own thread (server.runner). Streams add no per-token work beyond
llama-cpp-python's own but the least: each chunk it yields becomes one SSE event, formatted once,
and goes to the request's thread through a queue.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

from .errors import BackendError
from .loading import forget_pruned_prefix
from .models import Lease
from .params import GenerationRequest
from .streaming import DONE_EVENT, json_event, text_event
from .waiting import Abandoned

log = logging.getLogger(__name__)


def complete(lease: Lease, request: GenerationRequest) -> dict:
    """An OpenAI text completion object.

    Raises:
        BackendError: llama-cpp-python rejected the request (prompt longer than the context).
    """
    with _generating(lease):
        return _ready(lease).create_completion(request.prompt, model=lease.model.id, **request.sampling)


def stream_completion(lease: Lease, request: GenerationRequest) -> Iterator[str]:
    """OpenAI completion chunks as SSE events, ending `data: [DONE]`."""
    with _generating(lease):
        chunks = _ready(lease).create_completion(
            request.prompt, model=lease.model.id, stream=True, **request.sampling
        )
        for chunk in chunks:
            yield json_event(chunk)
    yield DONE_EVENT


def chat(lease: Lease, request: GenerationRequest) -> dict:
    """An OpenAI chat completion object.

    Raises:
        BackendError: llama-cpp-python rejected the request (context or chat template).
    """
    with _generating(lease):
        return _ready(lease).create_chat_completion(
            request.messages, model=lease.model.id, **request.sampling
        )


def stream_chat(lease: Lease, request: GenerationRequest) -> Iterator[str]:
    """OpenAI chat completion chunks as SSE events, ending `data: [DONE]`."""
    with _generating(lease):
        chunks = _ready(lease).create_chat_completion(
            request.messages, model=lease.model.id, stream=True, **request.sampling
        )
        for chunk in chunks:
            yield json_event(chunk)
    yield DONE_EVENT


def generate_text(lease: Lease, request: GenerationRequest) -> str:
    """Shimmy's generate: the whole response text.

    Raises:
        BackendError: llama-cpp-python rejected the request (context or chat template).
    """
    messages = shimmy_messages(lease, request)
    with _generating(lease):
        if messages is None:
            result = _ready(lease).create_completion(_raw_prompt(request), **request.sampling)
            return result["choices"][0]["text"]
        result = _ready(lease).create_chat_completion(messages, **request.sampling)
        return result["choices"][0]["message"]["content"] or ""


def stream_generate(lease: Lease, request: GenerationRequest) -> Iterator[str]:
    """Shimmy's generate stream: `data: <token text>` events, ending `data: [DONE]`."""
    messages = shimmy_messages(lease, request)
    with _generating(lease):
        if messages is None:
            chunks = _ready(lease).create_completion(_raw_prompt(request), stream=True, **request.sampling)
            for chunk in chunks:
                text = chunk["choices"][0]["text"]
                if text:
                    yield text_event(text)
        else:
            chunks = _ready(lease).create_chat_completion(messages, stream=True, **request.sampling)
            for chunk in chunks:
                text = chunk["choices"][0]["delta"].get("content")
                if text:
                    yield text_event(text)
    yield DONE_EVENT


def shimmy_messages(lease: Lease, request: GenerationRequest) -> list[dict] | None:
    """The chat messages for Shimmy's generate, or None to complete the raw prompt.

    As Shimmy does, a bare `prompt` is sent as the user's message through the model's own chat
    template; a model without a template completes the prompt as it is.
    """
    system = [{"role": "system", "content": request.system}] if request.system else []
    if request.messages is not None:
        return system + request.messages
    if not has_chat_template(lease.llama):
        return None
    return system + [{"role": "user", "content": request.prompt}]


def has_chat_template(llama: Any) -> bool:
    return "tokenizer.chat_template" in (getattr(llama, "metadata", None) or {})


def _ready(lease: Lease) -> Any:
    """The leased model's Llama, its KV cache safe to reuse for the next prompt."""
    forget_pruned_prefix(lease.llama)
    return lease.llama


def _raw_prompt(request: GenerationRequest) -> str:
    if request.system:
        return f"{request.system}\n\n{request.prompt}"
    return request.prompt or ""


@contextlib.contextmanager
def _generating(lease: Lease) -> Iterator[None]:
    """While generating, ask between tokens whether anyone still waits (server.interruptible); turn
    llama-cpp-python's ValueError for requests it cannot serve into a 400.

    Raises:
        Abandoned: nobody waits any more (the lease's waiter); generation stopped before the next token.
    """
    lease.llama.between_tokens = lease.waiter.check
    try:
        yield
    except Abandoned as err:
        log.info("model %s %s", lease.model.id, err.message)
        raise
    except ValueError as err:
        log.info("model %s rejected a request: %s", lease.model.id, err)
        raise BackendError(
            "invalid_request",
            f"model {lease.model.id} cannot process this request: the prompt may be longer than its "
            f"context window of {lease.n_ctx} tokens, or the messages may not fit its chat template",
        ) from err
    finally:
        lease.llama.between_tokens = None
