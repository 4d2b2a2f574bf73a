"""The lines of a push's NDJSON stream, typed as a pull's are (proxy/pulls/events.py); a failure is the
pull's `error` line (Failed)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from proxy.pulls.events import Failed, PullEvent


@dataclass(frozen=True)
class Pushing(PullEvent):
    """Bytes of the artifact the registry has so far: blobs it had already count as sent."""

    status: ClassVar[str] = "pushing"
    completed: int
    total: int


@dataclass(frozen=True)
class Pushed(PullEvent):
    status: ClassVar[str] = "complete"
    ends: ClassVar[bool] = True
    target: str  # the canonical oci:// reference, tag included
    digest: str  # the manifest's, sha256:<hex>


PUSH_EVENT_TYPES: tuple[type[PullEvent], ...] = (Pushing, Pushed, Failed)
