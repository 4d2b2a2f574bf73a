"""Which models are in memory (docs/api.md, Residency), in the manner of Ollama's scheduler: one Residency owns
what is loaded. Requests ask it for a model; it loads, waits or unloads by the memory estimate against
MAX_MODEL_MEMORY, by MAX_LOADED_MODELS, and by each model's keep_alive; nothing else touches residency.
A model that requests hold is never unloaded."""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from typing import Callable, Iterator

from .discovery import ModelFile, resolve_model, scan_models
from .keep_alive import KeepAlive
from ..errors import ModelLoadFailed, ModelNotFound, ModelTooLarge
from .loading import LoadedModel, asked_context, estimate, load_model
from .memory import default_budget, format_bytes
from ..settings import Settings
from ..engine.stats import ServingStats
from ..engine.prompt_cache import make_prompt_cache
from ..engine.client import Waiter

log = logging.getLogger(__name__)
ROOM_POLL_S = 0.1  # how often a request waiting for room asks whether its client still waits
REAP_INTERVAL_S = 0.5  # how often idle models are checked against their keep_alive

# Both are called with the model alone for its default context, and with `n_ctx` too for a context a request
# asked for (so test fakes that know nothing of contexts stay one-argument functions).
Loader = Callable[..., LoadedModel]
Estimator = Callable[..., int]


class Lease:
    """A request's hold on a loaded model, until `release()` (also a context manager)."""

    def __init__(self, residency: "Residency", loaded: LoadedModel, waiter: Waiter | None = None):
        self._residency = residency
        self.loaded = loaded
        self._released = False
        self.waiter = waiter or Waiter()

    @property
    def model(self) -> ModelFile:
        return self.loaded.model

    @property
    def engine(self):
        return self.loaded.engine

    @property
    def n_ctx(self) -> int:
        return self.loaded.n_ctx

    def release(self) -> None:
        """Let the model go idle (its keep_alive starts); calling it again does nothing."""
        if not self._released:
            self._released = True
            self._residency._release(self.loaded)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


def not_installed_message(name: str) -> str:
    """What to do about a model name nothing installed matches: the exact pull to make."""
    repo = name if "/" in name else "owner/name"
    return (f"model {name!r} is not installed; pull it first: POST /v1/api/pull "
            f'{{"model": "{repo}"}} (GET /v1/models lists the installed models)')


class Residency:
    """Finds models in MODELS_DIR, loads them on first use, and unloads them when idle or to make room."""

    def __init__(self, settings: Settings, loader: Loader | None = None, estimator: Estimator | None = None,
                 budget_bytes: int | None = None, gpu_offload: bool = False):
        self._models_dir = settings.models_dir
        self._max_loaded = max(1, settings.max_loaded_models)
        self._default_keep_alive = settings.keep_alive_s
        self.stats = ServingStats()
        self.prompt_cache = make_prompt_cache(settings.models_dir, settings.prompt_cache_memory_bytes,
                                              settings.prompt_cache_disk_max_bytes)
        self._loader: Loader = loader or (lambda model, n_ctx=None: load_model(
            settings, model, self.stats, n_ctx, prompt_cache=self.prompt_cache))
        self._estimator: Estimator = estimator or (lambda model, n_ctx=None: estimate(settings, model, n_ctx=n_ctx))
        self._settings = settings
        self.budget_bytes = budget_bytes or settings.max_model_memory_bytes or default_budget(gpu_offload)
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()  # least recently used first
        self._closing: list[LoadedModel] = []  # out of _loaded, their memory not yet freed
        self._cond = threading.Condition()  # guards _loaded and each LoadedModel's users/keep_alive
        self._load_lock = threading.Lock()  # one load (and the unloads that make room for it) at a time
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="residency", daemon=True)
        self._reaper.start()

    # --- what is installed ---

    def list_models(self) -> list[ModelFile]:
        """Every servable model, rescanning MODELS_DIR so new files appear without a restart."""
        return list(scan_models(self._models_dir).values())

    def find(self, name: str) -> ModelFile:
        """The model `name` stands for, from a fresh scan of MODELS_DIR: a model installed or deleted a moment
        ago is known or unknown at once.

        Raises:
            ModelNotFound: no model (or more than one) matches `name`.
        """
        model = resolve_model(scan_models(self._models_dir), name)
        if model is None:
            raise ModelNotFound(not_installed_message(name))
        return model

    # --- residency ---

    def acquire(self, name: str, waiter: Waiter | None = None, keep_alive: KeepAlive | None = None,
                pin: bool = False, n_ctx: int | None = None) -> Lease:
        """A hold on model `name`, loading it first if needed (unloading idle models to make room, or
        waiting for busy ones to go idle, for as long as `waiter` waits). `keep_alive` becomes the model's;
        None keeps what it has (KEEP_ALIVE for a new load). `pin` keeps
        it loaded until `unload`, whatever later requests ask. `n_ctx` asks for a context a request
        (loading.asked_context): a model loaded with another is reloaded when idle, and serves at its own
        while requests hold it (as Ollama, which queues the reload, would answer after them).

        Raises:
            ModelNotFound: no model matches `name`.
            ModelTooLarge: the model's estimate exceeds MAX_MODEL_MEMORY even with nothing else loaded.
            ModelLoadFailed: the file is not a model llama.cpp can load.
            Abandoned: the waiter's client hung up or its deadline passed while waiting for room.
        """
        model = self.find(name)
        if n_ctx is not None:
            n_ctx = asked_context(self._settings, model, n_ctx, self.budget_bytes)
        loaded = self._hold_loaded(model, keep_alive, pin, n_ctx)
        if loaded is None:
            loaded = self._load(model, waiter, keep_alive, pin, n_ctx)
        return Lease(self, loaded, waiter)

    def unload(self, name: str) -> tuple[str, str]:
        """Unload model `name`: at once when no request holds it ("unloaded"), else when its last request ends
        ("unloading": nobody waits for the streams to end); "not_loaded" when it is not in memory. A loaded model
        whose file was deleted meanwhile is found among the loaded ones. Returns (model id, status).

        Raises:
            ModelNotFound: no model matches `name`, loaded or installed.
        """
        with self._cond:
            model = resolve_model({id_: loaded.model for id_, loaded in self._loaded.items()}, name)
        if model is None:
            return self.find(name).id, "not_loaded"
        with self._cond:
            loaded = self._loaded.get(model.id)
            if loaded is None:
                return model.id, "not_loaded"
            loaded.pinned, loaded.keep_alive_s = False, 0  # _release unloads it when its last request ends
            if loaded.users > 0:
                return model.id, "unloading"
            self._take_out(loaded)
        self._close(loaded, "asked to")
        return model.id, "unloaded"

    def running(self) -> list[LoadedModel]:
        """The models in memory, least recently used first, then those being unloaded (until their memory is
        free, so this list and the process's memory agree)."""
        with self._cond:
            return list(self._loaded.values()) + self._closing

    def loaded_ids(self) -> list[str]:
        """Ids of the models in memory, least recently used first (never waits on a load)."""
        with self._cond:
            return list(self._loaded) + [m.model.id for m in self._closing]

    @contextlib.contextmanager
    def trying(self, name: str) -> Iterator[None]:
        """A trial of model `name` (a pull's smoke test) that leaves the models in memory as it found them.

        The model tried becomes the least recently used and unloads when idle, and the models unloaded to
        make room for it are loaded back, in their old order, once the block ends, even when it failed.

        Raises:
            ModelNotFound: no model matches `name`.
        """
        tried = self.find(name).id
        before = [loaded.model for loaded in self.running()]
        try:
            yield
        finally:
            self._restore(before, tried)

    def close(self) -> None:
        """Unload every model, ending their running requests."""
        self._stop.set()
        with self._cond:
            loaded = list(self._loaded.values())
            for item in loaded:
                self._take_out(item)
        for item in loaded:
            self._close(item, "shutting down")
        if self.prompt_cache is not None:  # SIGTERM: what memory holds goes to disk
            self.prompt_cache.flush()

    def _hold_loaded(self, model: ModelFile, keep_alive: KeepAlive | None, pin: bool = False,
                     n_ctx: int | None = None) -> LoadedModel | None:
        with self._cond:
            loaded = self._loaded.get(model.id)
            if loaded is None or loaded.model != model or loaded.closed or not loaded.engine.alive():
                return None
            if n_ctx is not None and n_ctx != loaded.n_ctx and loaded.users == 0 and loaded.engine.idle():
                return None  # idle at another context: _load replaces it (_victims takes it as stale)
            self._hold(loaded, keep_alive, pin)
            return loaded

    def _hold(self, loaded: LoadedModel, keep_alive: KeepAlive | None, pin: bool = False) -> None:
        loaded.users += 1
        if pin:  # POST /api/load with keep_alive -1 (a keep_loaded model): requests do not shorten it
            loaded.pinned, loaded.keep_alive_s = True, None
        elif keep_alive is not None and not loaded.pinned:
            loaded.keep_alive_s = keep_alive.seconds
        self._loaded.move_to_end(loaded.model.id)

    def _load(self, model: ModelFile, waiter: Waiter | None, keep_alive: KeepAlive | None, pin: bool,
              n_ctx: int | None = None) -> LoadedModel:
        need = self._estimator(model) if n_ctx is None else self._estimator(model, n_ctx)
        if need > self.budget_bytes:
            raise ModelTooLarge(
                f"model {model.id} needs about {format_bytes(need)} (weights plus KV cache for N_CTX x PARALLEL) "
                f"and MAX_MODEL_MEMORY is {format_bytes(self.budget_bytes)}: lower N_CTX or PARALLEL, or raise "
                f"MAX_MODEL_MEMORY")
        with self._load_lock:
            loaded = self._hold_loaded(model, keep_alive, pin, n_ctx)  # loaded by another request meanwhile
            if loaded is not None:
                return loaded
            for victim in self._make_room(model, need, waiter):
                self._close(victim, f"to make room for {model.id}")
            loaded = self._loader(model) if n_ctx is None else self._loader(model, n_ctx)
            loaded.size_bytes = loaded.size_bytes or need
            loaded.keep_alive_s = self._default_keep_alive if keep_alive is None else keep_alive.seconds
            with self._cond:
                self._loaded[model.id] = loaded
                self._hold(loaded, None, pin)
                self._cond.notify_all()
            self._size_prompt_cache()
            return loaded

    def _make_room(self, model: ModelFile, need: int, waiter: Waiter | None) -> list[LoadedModel]:
        """Take out of the loaded set the idle models (least recently used first) whose memory and count
        must go for `model`; waits while busy ones stand in the way.

        Raises:
            Abandoned: from `waiter.check()` while waiting.
        """
        with self._cond:
            while True:
                victims = self._victims(model, need)
                if victims is not None:
                    for victim in victims:
                        self._take_out(victim)
                    return victims
                if waiter is not None:
                    waiter.check()
                self._cond.wait(ROOM_POLL_S)

    def _victims(self, model: ModelFile, need: int) -> list[LoadedModel] | None:
        """The idle models, least recently used first, to unload so `model` fits; None while it cannot."""
        victims: list[LoadedModel] = []
        stale = self._loaded.get(model.id)  # its file was replaced since it was loaded, or its engine stopped
        if stale is not None:
            if stale.users > 0 and stale.engine.alive():
                return None
            victims.append(stale)

        def fits() -> bool:  # models still being unloaded hold their memory until they are gone
            rest = [m for m in self._loaded.values() if m not in victims] + self._closing
            return sum(m.size_bytes for m in rest) + need <= self.budget_bytes and len(rest) < self._max_loaded

        for loaded in self._loaded.values():
            if fits():
                return victims
            if loaded not in victims and loaded.users == 0 and loaded.engine.idle():
                victims.append(loaded)
        return victims if fits() else None

    def _release(self, loaded: LoadedModel) -> None:
        with self._cond:
            loaded.users -= 1
            loaded.last_used = time.monotonic()
            unload_now = loaded.users == 0 and loaded.keep_alive_s == 0 \
                and self._loaded.get(loaded.model.id) is loaded
            if unload_now:
                self._take_out(loaded)
            self._cond.notify_all()
        if unload_now:
            self._close(loaded, "keep_alive 0")

    def _reap(self) -> None:
        """Unload models idle past their keep_alive."""
        while not self._stop.wait(REAP_INTERVAL_S):
            now = time.monotonic()
            with self._cond:
                expired = [m for m in self._loaded.values() if m.users == 0 and m.keep_alive_s is not None
                           and now >= m.last_used + m.keep_alive_s and m.engine.idle()]
                for loaded in expired:
                    self._take_out(loaded)
            for loaded in expired:
                self._close(loaded, f"idle for its keep_alive of {loaded.keep_alive_s:g} s")

    def _take_out(self, loaded: LoadedModel) -> None:
        """No request gets `loaded` any more; it counts as in memory until _close has freed it. Under _cond."""
        del self._loaded[loaded.model.id]
        self._closing.append(loaded)

    def _close(self, loaded: LoadedModel, why: str) -> None:
        try:
            loaded.close()
        finally:
            log.info("unloaded model %s (%s)", loaded.model.id, why)
            with self._cond:
                self._closing = [m for m in self._closing if m is not loaded]
                self._cond.notify_all()
            self._size_prompt_cache()

    def _size_prompt_cache(self) -> None:
        """The prompt cache's memory is what loaded models leave of MAX_MODEL_MEMORY (up to PROMPT_CACHE_BYTES)."""
        if self.prompt_cache is not None:
            with self._cond:
                used = sum(m.size_bytes for m in self._loaded.values())
            self.prompt_cache.set_room(self.budget_bytes - used)

    def _restore(self, before: list[ModelFile], tried: str) -> None:
        """Make `tried` the least recently used, load back what `before` had and lost, in `before`'s order."""
        with self._cond:
            if tried in self._loaded:
                self._loaded.move_to_end(tried, last=False)
        for model in before:
            try:
                current = self.find(model.id)
            except ModelNotFound:  # deleted since: nothing to load back
                continue
            try:
                self.acquire(current.id).release()  # evicts the least recently used: the tried model first
            except (ModelLoadFailed, ModelTooLarge):
                log.warning("could not load %s back after trying %s", model.id, tried)
        log.info("tried model %s; loaded now: %s", tried, ", ".join(self.loaded_ids()))
