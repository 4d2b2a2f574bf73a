"""/api/show's answer (ollama/ollama api/types.go ShowResponse) for an installed model: the template it is served
with, the parameters in force (num_ctx, stop, sampling), model_info from its GGUF header, and capabilities as
Ollama names them, each derived from the model (docs/api.md, Ollama-compatible API)."""
from __future__ import annotations

import json
from typing import Any

from core.fim import has_fim_tokens
from core.gguf_check import GGUFHeader, InvalidGGUF, scan_gguf_header
from core.gguf_reader import SkippedValue
from proxy.errors import ErrorCode, ProxyError
from proxy.models_dir.store import ModelStore
from proxy.ollama.convert import OLLAMA_DEFAULTS
from proxy.ollama.listing import details, installed_models, modified_at
from proxy.ollama.tools import template_takes_tools, template_thinks

PARAMETER_WIDTH = 30  # Ollama's `%-30s %v` lines, which Continue parses with /^(\S+)\s+((?:".*")|\S+)$/


def show_model(store: ModelStore, model_id: str, served: dict | None) -> dict:
    """/api/show for `model_id`; `served`: the backend's `POST /api/info` (None for a backend without it: the
    GGUF's own template, no stop strings, no loaded context).

    Raises:
        ProxyError: model_not_found (removed since it was resolved).
    """
    model = next((m for m in installed_models(store) if m["id"] == model_id), None)
    if model is None:
        raise ProxyError(ErrorCode.MODEL_NOT_FOUND, f"model '{model_id}' not found")
    path = store.final_path(model["files"][0])
    try:
        header: GGUFHeader | None = scan_gguf_header(path)
    except (InvalidGGUF, OSError):
        header = None  # an unreadable header shows no model_info; the listing's details say what is known
    metadata = header.metadata if header is not None else {}
    served = served or {}
    template = served.get("template") or _text(metadata.get("tokenizer.chat_template"))
    fim = _fim(path, header)
    info = {key: None if isinstance(value, SkippedValue) else value for key, value in metadata.items()}
    if isinstance(model["details"].get("parameters"), int):
        info["general.parameter_count"] = model["details"]["parameters"]
    return {"license": _text(metadata.get("general.license")),
            "modelfile": f"# served by the GGUF proxy sidecar\nFROM {model['files'][0]}\n",
            "parameters": parameters(served, metadata), "template": _with_fim(template, served.get("fim")),
            "details": details(model), "model_info": info,
            "capabilities": capabilities(metadata, template, fim), "modified_at": modified_at(model)}


def parameters(served: dict, metadata: dict[str, Any]) -> str:
    """Ollama's `parameters` text: num_ctx (the loaded context, else what a load gives), each stop string, and
    the sampling defaults an Ollama request gets (proxy.ollama.convert.OLLAMA_DEFAULTS over the backend's)."""
    arch = metadata.get("general.architecture")
    n_ctx = served.get("loaded_n_ctx") or served.get("default_n_ctx") or metadata.get(f"{arch}.context_length")
    lines = [("num_ctx", n_ctx)] if isinstance(n_ctx, int) else []
    lines += [("stop", json.dumps(stop)) for stop in served.get("stop") or () if isinstance(stop, str) and stop]
    sampling = {**(served.get("sampling") or {}), **OLLAMA_DEFAULTS}
    lines += [(name, value) for name, value in sampling.items() if isinstance(value, (int, float))]
    return "\n".join(f"{name:<{PARAMETER_WIDTH}} {_value(value)}" for name, value in lines)


def capabilities(metadata: dict[str, Any], template: str, fim: bool) -> list[str]:
    """Ollama's names for what the model can do here: `embedding` alone for an embedding model (a pooling type
    in its header, Ollama's rule), else `completion`, with `tools` and `thinking` when the template has them and
    `insert` when the vocabulary has fill-in-the-middle tokens. Never `vision`: this backend takes text only."""
    arch = metadata.get("general.architecture")
    if f"{arch}.pooling_type" in metadata:
        return ["embedding"]
    found = ["completion"]
    found += ["tools"] if template_takes_tools(template) else []
    found += ["insert"] if fim else []
    found += ["thinking"] if template_thinks(template) else []
    return found


def _with_fim(template: str, fim: Any) -> str:
    """The template with the fill-in-the-middle prompt in front, in Ollama's template words, for a model whose
    vocabulary has FIM tokens (the backend names their texts): how `suffix` requests are built, and what
    Continue looks for (`.Suffix`) to offer autocomplete."""
    if not isinstance(fim, dict) or not all(isinstance(fim.get(k), str) for k in ("pre", "suf", "mid")):
        return template
    return (f"{{{{- if .Suffix }}}}{fim['pre']}{{{{ .Prompt }}}}{fim['suf']}{{{{ .Suffix }}}}{fim['mid']}"
            f"{{{{- else }}}}{template}{{{{- end }}}}")


def _fim(path: Any, header: GGUFHeader | None) -> bool:
    if header is None:
        return False
    try:
        return has_fim_tokens(path, header)
    except OSError:
        return False


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
