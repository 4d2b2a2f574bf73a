"""Prometheus text read back for the metrics tests: each family's type and samples, and one sample's value."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def families(text: str) -> dict[str, dict]:
    """Each family's type and its samples keyed by (sample name, labels)."""
    return {family.name: {"type": family.type, "samples": {
        (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}}
        for family in text_string_to_metric_families(text)}


def sample(found: dict, family: str, name: str | None = None, **labels) -> float:
    return found[family]["samples"][(name or family, tuple(sorted(labels.items())))]
