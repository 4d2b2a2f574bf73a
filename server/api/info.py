"""`POST /api/info {model}`: what a model is served with, for the proxy's Ollama `/api/show` and `/api/ps`: the
chat template used (server.chat.shown), its stop strings, the chat sampling defaults in force, and its contexts
(trained, loaded, and what a load without `n_ctx` gives). A model not in memory is read without loading it:
its header and, for the template and stop strings, its vocabulary alone (llama.cpp's vocab_only)."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from flask import Blueprint, current_app, jsonify, request

from ..chat.fim import fim_tokens
from ..chat.prompts import ChatFormat, chat_format_for
from ..engine.sampling import Sampling
from ..errors import ModelLoadFailed
from ..residency.discovery import ModelFile
from ..residency.loading import check_header, context_length
from .params import CHAT_DEFAULTS, model_name, parse_json_body

bp = Blueprint("backend_info", __name__)
# The sampling fields Ollama's `parameters` name the same way.
SHOWN_SAMPLING = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n")


@bp.post("/api/info")
def info():
    backend = current_app.extensions["backend"]
    residency = backend.residency
    model = residency.find(model_name(parse_json_body(request.get_data())))
    header = check_header(model)
    loaded = next((m for m in residency.running() if m.model.id == model.id and not m.closed), None)
    with _vocabulary(model, header, loaded.llama if loaded is not None else None) as (chat, llama_model):
        stop = chat.render([{"role": "user", "content": ""}]).stop
        template, source = chat.template, "gguf" if chat.has_template else "family"
        fim = fim_texts(llama_model)
    sampling = Sampling.of(CHAT_DEFAULTS)
    return jsonify(id=model.id, architecture=header.architecture, template=template, template_source=source,
                   stop=list(stop), sampling={name: getattr(sampling, name) for name in SHOWN_SAMPLING},
                   context_length=header.context_length, default_n_ctx=context_length(backend.settings, header),
                   loaded_n_ctx=loaded.n_ctx if loaded is not None else None, fim=fim)


def fim_texts(llama_model: Any) -> dict[str, str] | None:
    """The texts of the vocabulary's fill-in-the-middle prefix, suffix and middle tokens, or None without them."""
    import llama_cpp as ll

    tokens = fim_tokens(ll.llama_model_get_vocab(llama_model.model))
    if tokens is None:
        return None
    return {role: llama_model.token_get_text(getattr(tokens, role)) for role in ("pre", "suf", "mid")}


@contextlib.contextmanager
def _vocabulary(model: ModelFile, header: Any, handle: Any) -> Iterator[tuple[ChatFormat, Any]]:
    """The loaded model's chat format and llama.cpp model, or both made from the file's vocabulary alone
    (freed after)."""
    if handle is not None:
        yield handle.chat, handle.model
        return
    import llama_cpp as ll
    from llama_cpp._internals import LlamaModel

    params = ll.llama_model_default_params()
    params.vocab_only = True
    try:
        vocab = LlamaModel(path_model=model.path, params=params, verbose=False)
    except (ValueError, RuntimeError, OSError) as err:
        raise ModelLoadFailed(f"{model.files[0]} could not be read: not a GGUF model llama.cpp can read") from err
    try:
        yield chat_format_for(vocab, header), vocab
    finally:
        vocab.close()
