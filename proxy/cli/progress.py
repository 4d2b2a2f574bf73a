"""How `python -m proxy pull` shows a pull's events: a live bar on a terminal, plain lines otherwise."""
from __future__ import annotations

import collections
import shutil
import time
from typing import Callable, TextIO

RATE_WINDOW_S = 5.0  # the rate is measured over the last few seconds, so it follows changes
BAR_WIDTH = (10, 40)  # the bar's fewest and most characters; below the fewest it is left out
NAME_WIDTH = (8, 64)  # the same for the file name (cut with "...")
PLAIN_INTERVAL_S = 10.0  # without a terminal: a line at least this often ...
PLAIN_STEP_PERCENT = 10.0  # ... or whenever another 10% arrived


class RateMeter:
    """Bytes a second over a sliding window of (time, completed) samples."""

    def __init__(self, window_s: float = RATE_WINDOW_S):
        self.window_s = window_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, now: float, completed: int) -> None:
        self._samples.append((now, completed))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()

    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 and b1 >= b0 else None


class PullProgress:
    """Prints pull events to `out`; `show` takes each NDJSON object as it arrives."""

    def __init__(self, out: TextIO, tty: bool, clock: Callable[[], float] = time.monotonic,
                 columns: Callable[[], int] = lambda: shutil.get_terminal_size((80, 24)).columns):
        self.out, self.tty, self.clock, self.columns = out, tty, clock, columns
        self.meter = RateMeter()
        self._bar_len = 0  # characters of the bar now on screen; 0: no bar is showing
        self._plain_at: float | None = None
        self._plain_step = -1  # the last tenth printed

    def show(self, event: dict) -> None:
        if event.get("status") in ("downloading", "pushing"):
            self._downloading(event)
            return
        self.end_bar()
        line = describe(event)
        if line:
            self._write(line + "\n")

    def end_bar(self) -> None:
        """Move below a live bar, so the next line does not overwrite it."""
        if self._bar_len:
            self._write("\n")
            self._bar_len = 0

    def _downloading(self, event: dict) -> None:
        now = self.clock()
        completed, total = int(event.get("completed") or 0), int(event.get("total") or 0)
        self.meter.add(now, completed)
        percent = 100.0 * completed / total if total else 100.0
        stats = format_stats(completed, total, self.meter.rate())
        if self.tty:
            self._draw_bar(str(event.get("filename", event.get("status"))), percent, stats)
        elif self._plain_due(now, percent):
            name = f" {event['filename']}" if event.get("filename") else ""
            self._write(f"{event.get('status')}{name}: {percent:.0f}%, {stats}\n")

    def _plain_due(self, now: float, percent: float) -> bool:
        step = int(percent // PLAIN_STEP_PERCENT)
        due = self._plain_at is None or now - self._plain_at >= PLAIN_INTERVAL_S or step > self._plain_step
        if due:
            self._plain_at, self._plain_step = now, step
        return due

    def _draw_bar(self, filename: str, percent: float, stats: str) -> None:
        # Asked each time: the terminal may have been resized since.
        line = bar_line(filename, percent, stats, self.columns())
        self._write("\r" + line + " " * max(0, self._bar_len - len(line)))
        self._bar_len = len(line)

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def bar_line(filename: str, percent: float, stats: str, columns: int) -> str:
    """`name [####....]  42.0% <stats>` in at most columns - 1 characters (the last column would wrap): the
    numbers whole where they fit, then the name (cut with "..."), then a bar of what room is left."""
    numbers = f"{percent:5.1f}% {stats}"
    room = columns - 2 - len(numbers)  # a space before the numbers, the last column unused
    if room < NAME_WIDTH[0]:
        return numbers[:max(0, columns - 1)]
    has_bar = room >= NAME_WIDTH[0] + 3 + BAR_WIDTH[0]  # " [", "]"
    name_width = min(len(filename), NAME_WIDTH[1], room - (3 + BAR_WIDTH[0] if has_bar else 0))
    name = filename if len(filename) <= name_width else filename[:name_width - 3] + "..."
    if not has_bar:
        return f"{name} {numbers}"
    return f"{name} [{bar(percent, min(BAR_WIDTH[1], room - len(name) - 3))}] {numbers}"


def bar(percent: float, width: int) -> str:
    filled = int(width * min(percent, 100.0) / 100.0)
    return "#" * filled + "." * (width - filled)


def describe(event: dict) -> str | None:
    """The line an event other than `downloading` prints; None for `error` (the caller reports it)."""
    status = event.get("status")
    if status == "starting":
        return f"pulling {event.get('model')}: {event.get('filename')}"
    if status == "queued":
        reason = f" ({event['reason']})" if event.get("reason") else ""
        return f"queued, position {event.get('position')}{reason}"
    if status == "evicting":
        return f"evicting {event.get('filename')}, the least recently used model, to make room"
    if status == "verifying":
        return f"verifying {event.get('filename')}"
    if status == "smoke_test":
        return f"loading {event.get('model')} in the backend for a test generation"
    if status == "complete":
        if event.get("target"):  # a push's
            return f"pushed {event.get('target')} (manifest {event.get('digest')})"
        if event.get("cached"):
            return f"already installed: {event.get('path')}"
        return (f"installed {event.get('path')} ({event.get('size_mb')} MB, sha256 {event.get('sha256')}, "
                f"model id {event.get('model_id')})")
    return None if status == "error" else str(status)


def format_stats(completed: int, total: int, rate_bps: float | None) -> str:
    """`12.3 MB / 45.6 MB  1.2 MB/s  ETA 0:28` (rate and ETA `--` until known)."""
    rate = f"{format_bytes(rate_bps)}/s" if rate_bps is not None else "--/s"
    eta = format_duration((total - completed) / rate_bps) if rate_bps and total >= completed else "--:--"
    return f"{format_bytes(completed)} / {format_bytes(total)}  {rate}  ETA {eta}"


def format_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
