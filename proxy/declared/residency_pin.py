"""Models kept in the backend's memory for a MODELS_MANIFEST entry with `keep_loaded: true`: loaded with
`keep_alive: -1` (BACKEND_CONTRACT: how keep_loaded models are pinned), and seen in the backend's /api/running."""
from __future__ import annotations

import json
import logging

from proxy.backend.client import BackendClient
from proxy.errors import ProxyError
from proxy.backend.errors import backend_error

log = logging.getLogger(__name__)
RUNNING_TIMEOUT_S = 5.0


class ResidencyPinner:
    def __init__(self, backend: BackendClient):
        self.backend = backend

    def loaded_ids(self) -> set[str] | None:
        """The ids the backend holds in memory; None when it cannot say (down, or without /api/running)."""
        try:
            response = self.backend.request("GET", "/api/running", timeout_s=RUNNING_TIMEOUT_S, probe=True)
            models = response.json().get("models") if response.status_code == 200 else None
        except (ProxyError, ValueError, AttributeError):
            return None
        if not isinstance(models, list):
            return None
        return {m["id"] for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)}

    def pin(self, model_id: str) -> None:
        """Load the model and keep it in memory whatever its idleness; returns once it is loaded.

        Raises:
            ProxyError: the backend's error (model_too_large, model_load_failed, ...), backend_unavailable,
                backend_timeout.
        """
        body = json.dumps({"model": model_id, "keep_alive": -1}).encode()
        response = self.backend.request("POST", "/api/load", body=body, content_type="application/json", stream=True)
        if response.status_code != 200:
            raise backend_error(response)
        response.close()
        log.info("model %s loaded and kept in memory (keep_loaded)", model_id)
