"""The events of a pull, as typed values; `to_json` is the one place they become the contract's NDJSON lines.

Each event type says its `status` and whether a job ends with it. A later kind (evicting, pushing) is one
more class here, added to EVENT_TYPES, and the OpenAPI document follows (see proxy/openapi/document.py).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from core.errors import error_code
from proxy.errors import STATUS_BY_CODE, ErrorCode, ProxyError

OPTIONAL = {"optional": True}  # field metadata: the line leaves the field out while it has its default


@dataclass(frozen=True)
class PullEvent:
    """One line of a pull's stream."""

    status: ClassVar[str]
    ends: ClassVar[bool] = False  # the last line of a job

    def to_json(self) -> dict:
        """The contract's JSON object: `status` first, then the fields in their declared order."""
        line: dict = {"status": self.status}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.metadata.get("optional") and value == spec.default:
                continue
            line[spec.name] = list(value) if isinstance(value, tuple) else value
        return line


@dataclass(frozen=True)
class Starting(PullEvent):
    status: ClassVar[str] = "starting"
    model: str
    filename: str | None  # None: a pull that failed before it knew its file


@dataclass(frozen=True)
class Queued(PullEvent):
    status: ClassVar[str] = "queued"
    position: int
    reason: str | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True)
class Evicting(PullEvent):
    """An installed file removed to make room for this pull (least recently used; see proxy/models_dir/retention.py)."""

    status: ClassVar[str] = "evicting"
    filename: str


@dataclass(frozen=True)
class Downloading(PullEvent):
    status: ClassVar[str] = "downloading"
    filename: str
    completed: int
    total: int
    percent: float


@dataclass(frozen=True)
class Verifying(PullEvent):
    status: ClassVar[str] = "verifying"
    filename: str


@dataclass(frozen=True)
class SmokeTesting(PullEvent):
    status: ClassVar[str] = "smoke_test"
    model: str  # the model id the backend loads


@dataclass(frozen=True)
class Complete(PullEvent):
    status: ClassVar[str] = "complete"
    ends: ClassVar[bool] = True
    model: str
    filename: str
    path: str
    size_mb: float
    sha256: str | None
    revision: str  # the commit the revision resolved to
    model_id: str
    files: tuple[str, ...] = field(default=(), metadata=OPTIONAL)  # every part of a split set
    cached: bool = field(default=False, metadata=OPTIONAL)
    source: str | None = field(default=None, metadata=OPTIONAL)  # a registry source's canonical reference
    digest: str | None = field(default=None, metadata=OPTIONAL)  # and its manifest digest
    source_host: str | None = field(default=None, metadata=OPTIONAL)  # host:port the bytes came from


@dataclass(frozen=True)
class Failed(PullEvent):
    status: ClassVar[str] = "error"
    ends: ClassVar[bool] = True
    error: str
    code: ErrorCode = field(metadata={"schema": {"enum": sorted(STATUS_BY_CODE)}})

    def __post_init__(self) -> None:
        """Raises: ValueError when `code` is not an ErrorCode (a typo would otherwise reach a client)."""
        object.__setattr__(self, "code", error_code(self.code))

    @classmethod
    def of(cls, err: ProxyError) -> "Failed":
        return cls(err.message, err.code)

    @property
    def http_status(self) -> int:
        """The status a `stream: false` answer carries."""
        return self.code.status


EVENT_TYPES: tuple[type[PullEvent], ...] = (Starting, Queued, Evicting, Downloading, Verifying, SmokeTesting,
                                            Complete, Failed)
