"""Which model a llama-server request means. llama-server serves one; this proxy holds many, so a request
names it (`model` in the body, `?model=` on GET /props and /slots) or, when it does not, gets the one model
loaded, else the one installed; with several and none named it is a 400 listing them (docs/api.md)."""
from __future__ import annotations

import logging

from core import naming
from proxy.errors import ErrorCode, ProxyError
from proxy.pulls.pulled_names import is_pulled_name, model_id_pulled_as
from proxy.services import services

log = logging.getLogger(__name__)
LISTING_TIMEOUT_S = 5.0
SHOWN_CHOICES = 20  # a message lists at most this many model ids


def chosen_model(name: object) -> tuple[str, list[str]]:
    """The model id `name` stands for (as pulled, an id, a file name), or the default one when `name` is
    empty; and its installed files.

    Raises:
        ProxyError: invalid_request (not a string; several models and none named), model_not_found.
    """
    if name in (None, ""):
        name = _default_model()
    if not isinstance(name, str):
        raise ProxyError(ErrorCode.INVALID_REQUEST, "`model` must be a string: a model id as GET /v1/models lists")
    return installed_model(name)


def installed_model(name: str) -> tuple[str, list[str]]:
    """The id of the installed model `name` stands for (as pulled, an id, an id without its quant, a file
    name), and its files.

    Raises:
        ProxyError: model_not_found.
    """
    store = services().store
    model = model_id_pulled_as(store, name) if is_pulled_name(name) else name
    files = store.files_of_model(model)
    if not files:
        raise ProxyError(ErrorCode.MODEL_NOT_FOUND, f"no installed model named {name!r}; GET /v1/models lists "
                         'them, POST /v1/api/pull {"model": "owner/name"} installs one')
    return naming.model_id(files[0]), files


def _default_model() -> str:
    """The one model loaded, else the one installed.

    Raises:
        ProxyError: model_not_found (none installed), invalid_request (several, none loaded alone).
    """
    installed = sorted({naming.model_id(f) for f in services().store.installed_files()})
    if not installed:
        raise ProxyError(ErrorCode.MODEL_NOT_FOUND, 'no model is installed; pull one first: POST /v1/api/pull '
                         '{"model": "owner/name"}')
    loaded = [m for m in _loaded_ids() if m in installed]
    if len(loaded) == 1 or len(installed) == 1:
        return loaded[0] if len(loaded) == 1 else installed[0]
    shown = ", ".join(installed[:SHOWN_CHOICES]) + (", ..." if len(installed) > SHOWN_CHOICES else "")
    raise ProxyError(ErrorCode.INVALID_REQUEST, f"{len(installed)} models are installed and "
                     f"{len(loaded) or 'none'} loaded: name one as `model` (in the body, or ?model= on GET): {shown}")


def _loaded_ids() -> list[str]:
    """The ids of the models the backend has loaded; [] when it does not say (a plain llama-server)."""
    try:
        response = services().backend.request("GET", "/api/running", timeout_s=LISTING_TIMEOUT_S, probe=True)
        models = response.json().get("models") if response.status_code == 200 else None
    except (ProxyError, ValueError, AttributeError):
        return []
    return [m["id"] for m in models or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]
