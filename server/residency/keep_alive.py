"""How long a request asks its model to stay loaded once idle (Ollama's `keep_alive`)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeepAlive:
    """A request's `keep_alive`; a request without one has None instead, and the model keeps what it has
    (KEEP_ALIVE for a new load)."""

    seconds: float | None  # None: forever (-1), 0: unload when the request ends

    @property
    def forever(self) -> bool:
        return self.seconds is None
