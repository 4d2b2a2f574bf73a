"""`/api/push` over this proxy's push (proxy/pushes/): Ollama pushes a model to the registry its name holds
(`host/namespace/name:tag`, after an `/api/copy` to that name), so the name is the push's `oci://` target, and
the push's events are told as Ollama's progress lines (`pushing <digest>` with total/completed, `pushing
manifest`, `success`; a failure is `{"error"}`)."""
from __future__ import annotations

from typing import Iterable, Iterator

from proxy.errors import ErrorCode, ProxyError
from proxy.models_dir.store import ModelStore
from proxy.pulls.events import Failed, PullEvent
from proxy.pushes.events import Pushed, Pushing


def push_target(name: str) -> str:
    """The `oci://` reference an Ollama name pushes to.

    Raises:
        ProxyError: invalid_request for a name without a registry host (Ollama's own registry, which takes
            pushes only from its signed-in clients).
    """
    first = name.split("/", 1)[0]
    if "/" not in name or not ("." in first or ":" in first or first == "localhost"):
        raise ProxyError(ErrorCode.INVALID_REQUEST, f"{name!r} names no registry host: copy the model to "
                         "host[:port]/namespace/name:tag (POST /api/copy) and push that name; registry.ollama.ai "
                         "takes pushes only from its signed-in clients")
    return f"oci://{name}"


def push_lines(events: Iterable[PullEvent], store: ModelStore, model_id: str) -> Iterator[dict]:
    """Ollama's lines for a push's events."""
    records = {e["id"]: e for e in store.installed_records()}
    digest = f"sha256:{(records.get(model_id) or {}).get('sha256') or ''}"
    yield {"status": "retrieving manifest"}
    for event in events:
        if isinstance(event, Pushing):
            yield {"status": f"pushing {digest}", "digest": digest, "total": event.total,
                   "completed": event.completed}
        elif isinstance(event, Pushed):
            yield {"status": "pushing manifest"}
            yield {"status": "success"}
        elif isinstance(event, Failed):
            yield {"error": event.error}
