"""Durations and sizes as people write them in settings and requests: `5m`, `-1`, `8GiB`."""
from __future__ import annotations

import math
import re

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# A keep_alive longer than this means forever: later expiry times are past what a date can hold (year 9999),
# and no one waits ten years for an idle model to unload.
KEEP_ALIVE_FOREVER_S = 10 * 365 * 86400.0
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "ki": 1 << 10, "m": 1000**2, "mb": 1000**2,
               "mib": 1 << 20, "mi": 1 << 20, "g": 1000**3, "gb": 1000**3, "gib": 1 << 30, "gi": 1 << 30,
               "t": 1000**4, "tb": 1000**4, "tib": 1 << 40, "ti": 1 << 40}


def parse_keep_alive(value: object) -> float | None:
    """Seconds a model stays loaded unused, from Ollama's forms: a duration (`"10m"`, `"1h30m"`, `"45s"`),
    seconds as a number or numeric string, negative or past KEEP_ALIVE_FOREVER_S for forever (None), 0 to
    unload when the request ends.

    Raises:
        ValueError: anything else (the message says what is accepted).
    """
    if isinstance(value, bool) or value is None:
        raise ValueError("keep_alive must be a duration such as \"5m\", seconds as a number, -1 or 0")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _duration(text.lstrip("-")) * (-1 if text.startswith("-") else 1)
    else:
        raise ValueError("keep_alive must be a duration such as \"5m\", seconds as a number, -1 or 0")
    if not math.isfinite(seconds):
        raise ValueError("keep_alive must be finite (use -1 for forever)")
    return None if seconds < 0 or seconds > KEEP_ALIVE_FOREVER_S else seconds


def _duration(text: str) -> float:
    total, end = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != end:
            break
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        end = match.end()
    if end != len(text) or not text:
        raise ValueError(f"keep_alive {text!r} is not a duration: write e.g. \"30s\", \"5m\", \"1h\", -1 or 0")
    return total


def parse_size(text: str) -> int:
    """Bytes from `8589934592`, `8GiB`, `512MiB`, `8G` (G = 10^9, GiB = 2^30).

    Raises:
        ValueError: not a size.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None or (match.group(2) or "").lower() not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size: write bytes or e.g. 8GiB, 512MiB")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()])
