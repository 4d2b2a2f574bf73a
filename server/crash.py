"""A worker killed by a fatal signal stops the whole backend, so whoever runs it can say why.

llama.cpp runs in gunicorn's worker. When it executes an instruction the CPU does not allow (SIGILL: a build
for another CPU, or AMX that a VM advertises without granting), gunicorn would only log it and fork a new
worker that dies again on the next generation. Instead the worker leaves a note through `faulthandler`
(the one safe way to write anything on SIGILL or SIGSEGV), and the master, seeing it, exits with status
128+N as if killed by that signal: scripts/start.sh and docker/start.sh name the signal and what to do.
"""
from __future__ import annotations

import faulthandler
import os
import signal
import tempfile
from pathlib import Path

from gunicorn.errors import HaltServer

from core.signal_stack import use_signal_stack

# faulthandler's first line names the signal with these words (CPython's faulthandler.c).
FATAL_SIGNALS = {
    "Illegal instruction": signal.SIGILL, "Segmentation fault": signal.SIGSEGV, "Bus error": signal.SIGBUS,
    "Floating point exception": signal.SIGFPE, "Aborted": signal.SIGABRT,
}


def note_path(pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"gguf-backend-worker-{pid}.crash"


def post_fork(server, worker) -> None:
    """In the new worker: on a fatal signal, write faulthandler's report to the worker's note."""
    worker.crash_note = open(note_path(os.getpid()), "w")  # noqa: SIM115 - open for the worker's lifetime
    faulthandler.enable(file=worker.crash_note)


def child_exit(server, worker) -> None:
    """In the master, for each worker that ended: halt with 128+N when it died of fatal signal N.

    Raises:
        HaltServer: the worker's note names a fatal signal (gunicorn's own way to stop the master).
    """
    path = note_path(worker.pid)
    try:
        report = path.read_text(errors="replace")
    except OSError:
        return
    path.unlink(missing_ok=True)
    fatal = next((sig for words, sig in FATAL_SIGNALS.items() if f"Fatal Python error: {words}" in report), None)
    if fatal is not None:
        server.log.error("worker %s was killed by %s; stopping the backend", worker.pid, fatal.name)
        raise HaltServer(f"worker killed by {fatal.name}", 128 + fatal)


def pre_request(worker, req) -> None:
    """On the thread about to run a request: a signal stack of its own, so a crash in it still leaves the note."""
    use_signal_stack()
