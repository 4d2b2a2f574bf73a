"""One thread per loaded model that runs all of its llama.cpp calls.

llama.cpp (built with OpenMP, as llama-cpp-python builds it on Linux) gives every thread that
calls it a team of OpenMP workers, kept for the life of that thread. With gunicorn's request
threads each calling in, libgomp soon counts more threads than cores and stops spinning at its
barriers: decoding on 2 cores fell from ~50 to ~35 tokens/s. So requests hand their work to the
model's own thread, and a stream's events come back through a queue.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


class ModelRunner:
    """A single thread that runs the calls given to it, one at a time."""

    def __init__(self, name: str):
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")

    def call(self, function: Callable[..., T], *args) -> T:
        """Run `function(*args)` on the model's thread and return (or raise) what it does."""
        return self._executor.submit(function, *args).result()

    def stream(self, make_items: Callable[[], Iterator[T]]) -> "RunnerStream[T]":
        """Iterate `make_items()` on the model's thread; the items arrive through the result."""
        return RunnerStream(self._executor, make_items)

    def shutdown(self) -> None:
        """Stop the thread once its current call ends (its OpenMP workers go with it)."""
        self._executor.shutdown(wait=True)


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


_END = object()


class RunnerStream(Iterator[T]):
    """Items produced on the model's thread, consumed on the caller's.

    The producer runs ahead of the consumer (an item is a token's text, a few bytes); `close()`
    stops it after its current item and waits for that, so the model is idle when close returns.
    """

    def __init__(self, executor: ThreadPoolExecutor, make_items: Callable[[], Iterator[T]]):
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._cancelled = threading.Event()
        self._done = False
        self._producer = executor.submit(self._produce, make_items)

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item = self._items.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.error
        return item

    def close(self) -> None:
        self._cancelled.set()
        self._done = True
        self._producer.result()

    def _produce(self, make_items: Callable[[], Iterator[T]]) -> None:
        items = None
        try:
            if self._cancelled.is_set():
                return
            items = make_items()
            for item in items:
                self._items.put(item)
                if self._cancelled.is_set():
                    break
        except BaseException as err:  # handed to the consumer, which raises it
            self._items.put(_Failure(err))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            self._items.put(_END)
