"""A loaded model's engine without llama.cpp, for residency tests (server.residency.loading.ModelEngine)."""
from __future__ import annotations


class FakeLlama:
    """A loaded model's engine without llama.cpp (server.residency.loading.ModelEngine): always idle, closed when
    unloaded."""

    n_slots = 1

    def __init__(self, name: str):
        self.name = name
        self.closed = False

    def close(self, free=None) -> None:
        self.closed = True

    def idle(self) -> bool:
        return True

    def alive(self) -> bool:
        return not self.closed

    def occupancy(self) -> tuple[int, int]:
        return 0, 0
