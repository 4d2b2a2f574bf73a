"""A signal stack for the calling thread, so that faulthandler can report a crash of any thread.

faulthandler writes its report from a signal handler; on a stack overflow that handler cannot run on the stack
that overflowed, and CPython sets up an alternate stack for the main thread only. A thread that runs native
code (llama.cpp's engine loop, request threads) calls `use_signal_stack()` first, so that its crash is reported
(server/crash.py turns the report into the backend's exit status and message) instead of the process vanishing.
"""
from __future__ import annotations

import ctypes
import threading

_ALT_STACK_BYTES = 64 * 1024
_thread_stacks = threading.local()


def use_signal_stack() -> None:
    """Give the calling thread its own signal stack, once, so that faulthandler's note is written even when the
    thread dies of a stack overflow (the handler cannot run on the stack that overflowed; faulthandler sets up
    an alternate stack for the main thread only). Does nothing where libc has no sigaltstack."""
    if getattr(_thread_stacks, "stack", None) is not None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        sigaltstack = libc.sigaltstack
    except (OSError, AttributeError):
        return
    buffer = ctypes.create_string_buffer(_ALT_STACK_BYTES)
    stack = _StackT(ctypes.cast(buffer, ctypes.c_void_p), 0, _ALT_STACK_BYTES)
    if sigaltstack(ctypes.byref(stack), None) == 0:
        _thread_stacks.stack = buffer  # kept for the thread's lifetime: the kernel holds its address


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]
