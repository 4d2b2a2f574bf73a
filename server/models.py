"""The models the backend serves: discovery on demand, lazy loading, an LRU of loaded models and
one lock a model, since a llama.cpp context serves one request at a time."""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from typing import Any, Callable, Iterator, TypeVar

from .discovery import ModelFile, resolve_model, scan_models
from .errors import ModelLoadFailed, ModelNotFound
from .loading import LoadedModel, load_model
from .settings import Settings
from .waiting import Waiter

log = logging.getLogger(__name__)
T = TypeVar("T")
LOCK_POLL_S = 0.1  # how often a request waiting for a busy model asks whether its client still waits


class Lease:
    """Exclusive use of one loaded model until `release()` (also a context manager)."""

    def __init__(self, loaded: LoadedModel, waiter: Waiter | None = None):
        self._loaded = loaded
        self._released = False
        self.waiter = waiter or Waiter()  # asked between tokens whether anyone still waits

    @property
    def model(self) -> ModelFile:
        return self._loaded.model

    @property
    def llama(self) -> Any:
        return self._loaded.llama

    @property
    def n_ctx(self) -> int:
        return self._loaded.n_ctx

    def call(self, function: Callable[..., T], *args) -> T:
        """Run `function(*args)` on the model's own thread (server.runner says why)."""
        return self._loaded.runner.call(function, *args)

    def stream(self, make_items: Callable[[], Iterator[T]]) -> Iterator[T]:
        """Iterate `make_items()` on the model's own thread; closing the result stops it."""
        return self._loaded.runner.stream(make_items)

    def release(self) -> None:
        """Free the model for the next request; calling it again does nothing."""
        if not self._released:
            self._released = True
            self._loaded.lock.release()

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


Loader = Callable[[ModelFile], LoadedModel]


def not_installed_message(name: str) -> str:
    """What to do about a model name nothing installed matches: the exact pull to make."""
    repo = name if "/" in name else "owner/name"
    return (f"model {name!r} is not installed; pull it first: POST /v1/api/pull "
            f'{{"model": "{repo}"}} (GET /v1/models lists the installed models)')


class ModelRegistry:
    """Finds models in MODELS_DIR, loads them on first use and keeps at most `max_loaded` loaded."""

    def __init__(self, settings: Settings, loader: Loader | None = None):
        self._models_dir = settings.models_dir
        self._max_loaded = max(1, settings.max_loaded_models)
        self._loader: Loader = loader or (lambda model: load_model(settings, model))
        self._catalog: dict[str, ModelFile] = {}
        self._catalog_lock = threading.Lock()
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self._load_lock = threading.Lock()  # guards _loaded; loads and unloads happen under it
        self._loaded_ids: tuple[str, ...] = ()  # a copy for /health, which must never wait on a load

    def list_models(self) -> list[ModelFile]:
        """Every servable model, rescanning MODELS_DIR so new files appear without a restart."""
        return list(self._rescan().values())

    def find(self, name: str) -> ModelFile:
        """The model `name` stands for, from a fresh scan of MODELS_DIR (one directory listing): a model
        installed or deleted a moment ago is known or unknown at once, and no stale list makes a name
        ambiguous.

        Raises:
            ModelNotFound: no model (or more than one) matches `name`.
        """
        model = resolve_model(self._rescan(), name)
        if model is None:
            raise ModelNotFound(not_installed_message(name))
        return model

    def acquire(self, name: str, waiter: Waiter | None = None) -> Lease:
        """Exclusive use of model `name`, loading it first if needed; waits while another request uses it,
        for as long as `waiter` still waits.

        Raises:
            ModelNotFound: no model matches `name`.
            ModelLoadFailed: the file is not a model llama.cpp can load.
            Abandoned: the waiter's client hung up or its deadline passed while the model was busy.
        """
        model = self.find(name)
        while True:
            loaded = self._get_or_load(model)
            _wait_for(loaded.lock, waiter)
            if not loaded.closed:
                return Lease(loaded, waiter)
            loaded.lock.release()  # unloaded while we waited for it: load it again

    @contextlib.contextmanager
    def trying(self, name: str) -> Iterator[None]:
        """A trial of model `name` (a pull's smoke test) that leaves the models in memory as it found them.

        Why here and not in the proxy: only the registry knows what a load evicted, and a reload must happen
        before the pull says `complete`. The model tried becomes the least recently used, so with room for it
        it evicts nobody now and is the first to go later; the models evicted to make room for it are loaded
        back, in their old order, once the block ends (the tried model going first), even when it failed.

        Raises:
            ModelNotFound: no model matches `name`.
        """
        tried = self.find(name).id
        with self._load_lock:
            before = [loaded.model for loaded in self._loaded.values()]  # least recently used first
        try:
            yield
        finally:
            self._restore(before, tried)

    def loaded_ids(self) -> list[str]:
        """Ids of the models in memory, least recently used first."""
        return list(self._loaded_ids)

    def close(self) -> None:
        """Unload every model, waiting for running requests to finish."""
        with self._load_lock:
            while self._loaded:
                self._unload_least_recent()

    def _restore(self, before: list[ModelFile], tried: str) -> None:
        """Make `tried` the least recently used, load back what `before` had and lost, in `before`'s order."""
        with self._load_lock:
            if tried in self._loaded:
                self._loaded.move_to_end(tried, last=False)
                self._loaded_ids = tuple(self._loaded)
        catalog = self._rescan()
        for model in before:
            current = catalog.get(model.id)
            if current is None:  # deleted since: nothing to load back
                continue
            try:
                self._get_or_load(current)  # evicts the least recently used: the tried model first
            except ModelLoadFailed:
                log.warning("could not load %s back after trying %s", model.id, tried)
        log.info("tried model %s; loaded now: %s", tried, ", ".join(self._loaded_ids))

    def _rescan(self) -> dict[str, ModelFile]:
        catalog = scan_models(self._models_dir)
        with self._catalog_lock:
            self._catalog = catalog
        return catalog

    def _get_or_load(self, model: ModelFile) -> LoadedModel:
        with self._load_lock:
            loaded = self._loaded.get(model.id)
            if loaded is not None and loaded.model == model:
                self._loaded.move_to_end(model.id)
                self._loaded_ids = tuple(self._loaded)
                return loaded
            if loaded is not None:  # the file was replaced since it was loaded: unload it first
                self._loaded.move_to_end(model.id, last=False)
                self._unload_least_recent()
            while len(self._loaded) >= self._max_loaded:
                self._unload_least_recent()
            loaded = self._loader(model)
            self._loaded[model.id] = loaded
            self._loaded_ids = tuple(self._loaded)
            return loaded

    def _unload_least_recent(self) -> None:
        loaded = self._loaded.popitem(last=False)[1]
        self._loaded_ids = tuple(self._loaded)
        with loaded.lock:  # waits for the request using it, if any
            loaded.close()
        log.info("unloaded model %s", loaded.model.id)


def _wait_for(lock: threading.Lock, waiter: Waiter | None) -> None:
    """Take `lock`; a waiter whose client left gives up instead (it would hold the model for nobody).

    Raises:
        Abandoned: from `waiter.check()`.
    """
    if waiter is None:
        lock.acquire()
        return
    waiter.check()
    while not lock.acquire(timeout=LOCK_POLL_S):
        waiter.check()
