"""Stop sequences found in streamed text: Anthropic's answer names the sequence that ended it (`stop_sequence`),
which OpenAI's chat does not say, so the proxy looks for them itself rather than passing them to the backend."""
from __future__ import annotations


class StopScanner:
    """Text fed as it streams comes out cut before the first stop sequence; an end that could be the start of one
    is held back until the next piece says whether it is."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = tuple(stop for stop in stops if stop)
        self.matched: str | None = None
        self._held = ""

    def feed(self, text: str) -> str:
        """What of the text so far may go out now; nothing once a stop sequence was seen."""
        if self.matched is not None:
            return ""
        text, self._held = self._held + text, ""
        found = [(text.find(stop), stop) for stop in self.stops if stop in text]
        if found:
            position, self.matched = min(found)
            return text[:position]
        keep = max((size for stop in self.stops for size in range(1, len(stop)) if text.endswith(stop[:size])),
                   default=0)
        if keep:
            text, self._held = text[:-keep], text[-keep:]
        return text

    def flush(self) -> str:
        """What was held back, at the end of the text (it began a stop sequence that never completed)."""
        held, self._held = self._held, ""
        return held
