"""llama-server's own endpoints on the backend, in its shapes, plus `model` (llama-server serves one model; the
proxy names the one it means): /completion, /infill, /tokenize, /detokenize, /apply-template, /props, /slots.
The proxy's routes of the same paths forward here (docs/api.md, llama-server's endpoints)."""
from __future__ import annotations

import contextlib

from flask import Blueprint, Response, current_app, jsonify, request

from ..chat.fim import fim_prompt
from ..engine.jobs import Job
from ..engine.textout import token_piece
from ..engine.sampling import Sampling
from ..engine.client import Waiter
from ..errors import InvalidRequest
from ..residency.models import Lease
from . import generation
from .llama_shapes import CompletionShape, evaluated_only, generation_settings, slot_entry
from .native_params import NativeCompletion, flag, parse_native_completion, parse_tokens, text_field
from .params import keep_alive, model_name, parse_chat, parse_json_body
from .streaming import sse_response

bp = Blueprint("llama_server", __name__)


@bp.post("/completion")
def completion():
    return _complete(parse_native_completion(parse_json_body(request.get_data())))


@bp.post("/infill")
def infill():
    return _complete(parse_native_completion(parse_json_body(request.get_data()), infill=True))


@bp.post("/tokenize")
def tokenize():
    body = parse_json_body(request.get_data())
    content, pieces = text_field(body, "content"), flag(body, "with_pieces", False)
    with _lease(body) as lease:
        handle = lease.loaded.llama
        tokens = handle.tokenize(content, add_bos=flag(body, "add_special", False),
                                 special=flag(body, "parse_special", True)) if content else []
        if not pieces:
            return jsonify(tokens=tokens)
        return jsonify(tokens=[{"id": t, "piece": _shown_piece(token_bytes(handle.vocab, t))} for t in tokens])


@bp.post("/detokenize")
def detokenize():
    body = parse_json_body(request.get_data())
    tokens = parse_tokens(body)
    with _lease(body) as lease:
        return jsonify(content=detokenized(lease, tokens))


@bp.post("/apply-template")
def apply_template():
    parsed = parse_chat(parse_json_body(request.get_data()))
    with _lease({"model": parsed.model}) as lease:
        return jsonify(prompt=generation.rendered_chat(lease, parsed))  # tools rendered too, as llama-server does


@bp.get("/props")
def props():
    with _lease({"model": request.args.get("model", "")}) as lease:
        handle, loaded = lease.loaded.llama, lease.loaded
        defaults = generation_settings(Sampling(), None, [], False)
        return jsonify(
            default_generation_settings={"id": 0, "id_task": -1, "n_ctx": loaded.n_ctx, "speculative": False,
                                         "is_processing": False, "params": defaults, "prompt": ""},
            total_slots=loaded.engine.n_slots, model_path=loaded.model.path, model_alias=loaded.model.id,
            chat_template=handle.model.metadata().get("tokenizer.chat_template", ""),
            modalities={"vision": False, "audio": False}, build_info=_build_info())


@bp.get("/slots")
def slots():
    """The slots of the model if it is loaded ([] otherwise: nothing is loaded to show them)."""
    residency = current_app.extensions["backend"].residency
    model = residency.find(model_name({"model": request.args.get("model", "")}))
    loaded = next((m for m in residency.running() if m.model.id == model.id), None)
    states = loaded.engine.slot_reports() if loaded is not None else []
    if request.args.get("fail_on_no_slot") in ("1", "true") and all(s.processing for s in states):
        return jsonify(error={"code": 503, "message": "no slot available", "type": "unavailable_error"}), 503
    params = generation_settings(Sampling(), None, [], False)
    return jsonify([slot_entry(state, loaded.n_ctx, params) for state in states])


def _complete(asked: NativeCompletion) -> Response:
    """Lease the model, build the prompt (FIM for /infill) and run it: one answer or llama-server's stream."""
    waiter = Waiter.of_request(request.environ, request.headers)
    lease = current_app.extensions["backend"].residency.acquire(asked.request.model, waiter, asked.request.keep_alive)
    try:
        tokens = _prompt_tokens(lease, asked)
        text = detokenized(lease, tokens)
        if asked.n_predict == 0:
            with lease:
                return jsonify(evaluated_only(lease.model.id, len(tokens), text))
        job = Job(prompt=tokens, sampling=Sampling.of(asked.request.sampling, asked.grammar),
                  max_tokens=asked.n_predict, stop=tuple(asked.request.sampling.get("stop") or ()),
                  waiter=lease.waiter)
        shape = CompletionShape(lease.model.id, asked, job, text, lease.n_ctx)
        events = generation.run(lease, job)  # last: once submitted, the job is ended by closing its events
    except BaseException:
        lease.release()
        raise
    if asked.request.stream:
        response = sse_response(lease, shape.stream(events), events.close)
        waiter.answering()
        return response
    with lease, contextlib.closing(events):
        return jsonify(shape.whole(*generation.collect(events)))


def _prompt_tokens(lease: Lease, asked: NativeCompletion) -> list[int]:
    """Raises: InvalidRequest: an empty prompt, a token id outside the vocabulary, a model without FIM tokens."""
    handle = lease.loaded.llama
    if asked.fim is not None:
        return fim_prompt(handle, lease.model.id, asked.fim, handle.settings.n_batch, asked.n_predict)
    parts = [asked.prompt] if isinstance(asked.prompt, str) else asked.prompt
    tokens: list[int] = []
    for i, part in enumerate(parts):  # a leading string gets BOS, as llama-server's add_special
        tokens += handle.tokenize(part, add_bos=i == 0, special=True) if isinstance(part, str) else [part]
    if not tokens:
        raise InvalidRequest("`prompt` is empty")
    check_tokens(lease, tokens)
    return tokens


def check_tokens(lease: Lease, tokens: list[int]) -> None:
    """Raises: InvalidRequest naming the first token id the model's vocabulary lacks."""
    import llama_cpp

    n_vocab = llama_cpp.llama_vocab_n_tokens(lease.loaded.llama.vocab)
    bad = next((t for t in tokens if t >= n_vocab), None)
    if bad is not None:
        raise InvalidRequest(f"token id {bad} is outside model {lease.model.id}'s vocabulary of {n_vocab} tokens")


def detokenized(lease: Lease, tokens: list[int]) -> str:
    """The text of `tokens`, special tokens shown (llama-server's /detokenize and its `prompt` field).

    Raises:
        InvalidRequest: a token id outside the vocabulary.
    """
    check_tokens(lease, tokens)
    vocab = lease.loaded.llama.vocab
    return b"".join(token_bytes(vocab, t) for t in tokens).decode("utf-8", "replace")


def token_bytes(vocab, token: int) -> bytes:
    """The bytes of one token, special tokens shown as their text."""
    import llama_cpp

    return token_piece(llama_cpp, vocab, token, special=True)


def _shown_piece(piece: bytes) -> str | list[int]:
    """A token's piece as /tokenize shows it: text when it is whole UTF-8, else its bytes."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return list(piece)


def _build_info() -> str:
    import llama_cpp

    return f"llama-cpp-python {llama_cpp.__version__}"


def _lease(body: dict) -> Lease:
    """A hold on the body's model, loading it if needed (tokenizing needs its vocabulary)."""
    waiter = Waiter.of_request(request.environ, request.headers)
    return current_app.extensions["backend"].residency.acquire(model_name(body), waiter, keep_alive(body))
