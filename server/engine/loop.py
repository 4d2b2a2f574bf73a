"""The batching engine: one loop per loaded model that decodes up to PARALLEL requests together.

Modelled on llama.cpp's server (tools/server): slots and one loop. Each step gathers the next token of every
generating slot and, in the room left of N_BATCH, a chunk of any prompt being read, decodes them in one
`llama_decode`, samples each slot's token with its own sampler chain and hands the text to its request. A
request joins at the next step and leaves the step it ends; a slot keeps its tokens in the KV cache, so a
request whose prompt starts with them (a chat's next turn) evaluates only the rest.

Every llama.cpp call of a model runs on its engine's thread (llama.cpp's OpenMP workers belong to the thread
that calls it; many calling threads oversubscribe the cores). Requests talk to it through `Job`s.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, TypeVar

from core.errors import ErrorCode
from core.signal_stack import use_signal_stack

from ..errors import BackendError, InvalidRequest, ServerBusy
from .gauges import EngineCounters, EngineLoad
from .batch import fill_batch
from .jobs import Finished, FinishReason, Job, SlotReport
from .prompt_cache import PromptCache
from .prompt_reuse import PrefixReuse
from .sampling import make_sampler
from .slots import Slot, SlotState, common_prefix
from .stats import ServingStats
from .textout import TextOut, token_piece

log = logging.getLogger(__name__)
T = TypeVar("T")


class Engine:
    """The slots and the loop of one loaded model (`ctx` made with n_seq_max = `n_slots`)."""

    def __init__(self, name: str, open_model: Callable[[], Any], *, n_slots: int, n_ctx_slot: int,
                 n_batch: int, max_queue: int, stats: ServingStats | None = None,
                 prompt_cache: PromptCache | None = None, cache_key: str = ""):
        """Start the loop; `open_model()` runs first on its thread and gives the llama.cpp side (`ctx`,
        `vocab`, `n_swa`), kept as `self.handle`.

        Raises:
            Whatever `open_model` raises (the thread ends then).
        """
        import llama_cpp as ll

        self.name = name
        self._ll = ll
        self.n_ctx_slot = n_ctx_slot
        self._n_batch = n_batch
        self._max_queue = max_queue
        self._stats = stats or ServingStats()
        self._prompt_cache, self._cache_key = prompt_cache, cache_key
        self._reuse: PrefixReuse | None = None  # made on the engine's thread, with the context
        self.counters = EngineCounters()
        self._slots = [Slot(seq) for seq in range(n_slots)]
        self._waiting: deque[Job] = deque()
        self._tasks: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._final: Callable[[], None] | None = None
        opened: Future = Future()
        self._thread = threading.Thread(target=self._run, args=(open_model, opened), name=f"engine-{name}",
                                        daemon=True)
        self._thread.start()
        self.handle = opened.result()

    def _run(self, open_model: Callable[[], Any], opened: Future) -> None:
        use_signal_stack()  # llama.cpp crashing on this thread still leaves server/crash.py its note
        try:
            handle = open_model()
        except BaseException as err:
            opened.set_exception(err)
            return
        self._ctx, self._vocab, self._n_swa = handle.ctx, handle.vocab, handle.n_swa
        self._memory = self._ll.llama_get_memory(self._ctx)
        self._batch = self._ll.llama_batch_init(self._n_batch, 0, 1)
        if self._prompt_cache is not None:
            self._reuse = PrefixReuse(self._ll, self._ctx, handle.model.model, self._prompt_cache, self._cache_key,
                                      self._slots, self._n_swa)
        opened.set_result(handle)
        self._loop()

    # --- the request threads' side ---

    def submit(self, job: Job) -> Job:
        """Queue `job` for the next free slot.

        Raises:
            InvalidRequest: the prompt leaves no room in the context for an answer.
            ServerBusy: MAX_QUEUE requests wait already.
        """
        if len(job.prompt) >= self.n_ctx_slot:
            raise InvalidRequest(
                f"the prompt is {len(job.prompt)} tokens; model {self.name}'s context (N_CTX) is "
                f"{self.n_ctx_slot} tokens and must also hold the answer: shorten the prompt or raise N_CTX")
        with self._cond:
            if self._stopping:
                raise ServerBusy(f"model {self.name} is being unloaded; try again")
            free = sum(1 for slot in self._slots if not slot.busy)
            if len(self._waiting) >= free + self._max_queue:
                raise ServerBusy(f"model {self.name} has {len(self._slots)} requests running and "
                                 f"{self._max_queue} waiting (MAX_QUEUE); try again shortly")
            self._waiting.append(job)
            self._cond.notify()
        return job

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function(*args)` on the engine's thread between two steps; return (or raise) what it does."""
        future: Future = Future()

        def task() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function(*args))
                except BaseException as err:  # handed to the caller, which raises it
                    future.set_exception(err)

        with self._cond:
            if self._stopping:
                raise ServerBusy(f"model {self.name} is being unloaded; try again")
            self._tasks.append(task)
            self._cond.notify()
        return future.result()

    def occupancy(self) -> tuple[int, int]:
        """Slots busy (running a request) and requests waiting for one."""
        with self._cond:
            return sum(1 for slot in self._slots if slot.busy), len(self._waiting)

    def gauges(self) -> EngineLoad:
        """Requests running and waiting and the KV cells running requests hold, read without the lock (so a
        scrape never waits on a step: server.engine.gauges)."""
        held = [len(slot.tokens) for slot in self._slots if slot.busy]
        return EngineLoad(running=len(held), waiting=len(self._waiting), kv_cells_used=sum(held),
                          kv_cells=len(self._slots) * self.n_ctx_slot)

    def slot_reports(self) -> list[SlotReport]:
        """Each slot for llama-server's /slots, read without the lock as gauges() is (a step old at most)."""
        states = []
        for slot in self._slots:
            job = slot.job
            remain = -1 if job is None or job.max_tokens is None else max(0, job.max_tokens - job.n_generated)
            states.append(SlotReport(slot.seq, job is not None, len(slot.tokens), job.n_generated if job else 0,
                                    remain))
        return states

    @property
    def n_slots(self) -> int:
        return len(self._slots)

    def alive(self) -> bool:
        """Whether the loop still runs (False once it stopped or was closed: load the model again)."""
        return self._thread.is_alive() and not self._stopping

    def idle(self) -> bool:
        busy, waiting = self.occupancy()
        return busy == 0 and waiting == 0 and not self._tasks

    def close(self, free: Callable[[], None] | None = None) -> None:
        """Stop the loop (running jobs end with an error), then run `free` on its thread and end it."""
        with self._cond:
            self._stopping = True
            self._final = free
            self._cond.notify()
        self._thread.join()

    # --- the engine thread ---

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._stopping or self._tasks or self._waiting or self._active()):
                        self._cond.wait()
                    if self._stopping:
                        break
                    tasks = list(self._tasks)
                    self._tasks.clear()
                    admitted = self._admit()
                for task in tasks:
                    task()
                for slot in admitted:
                    self._start(slot)
                self._drop_cancelled()
                if self._active():
                    self._step()
        except Exception:  # never silently: every waiting request gets an answer
            log.exception("the engine of model %s stopped", self.name)
        finally:
            self._shutdown()

    def _active(self) -> bool:
        return any(slot.busy for slot in self._slots)

    def _admit(self) -> list[Slot]:
        """Give waiting jobs free slots, each the slot whose cached tokens share the longest prefix with it."""
        admitted = []
        while self._waiting:
            free = [slot for slot in self._slots if not slot.busy]
            if not free:
                break
            job = self._waiting.popleft()
            if job.cancelled:
                continue
            slot = max(free, key=lambda s: (common_prefix(s.tokens, job.prompt), -s.last_used))
            slot.job, slot.state = job, SlotState.READING_PROMPT
            admitted.append(slot)
        if any(job.cancelled for job in self._waiting):  # its client left, or its time ran out: JobEvents
            self._waiting = deque(job for job in self._waiting if not job.cancelled)
        return admitted

    def _start(self, slot: Slot) -> None:
        """Keep the slot's cached prefix of the job's prompt, drop the rest, and set up its sampler."""
        ll, job = self._ll, slot.job
        assert job is not None
        keep = min(common_prefix(slot.tokens, job.prompt), len(job.prompt) - 1)
        if keep > 0 and not self._can_reuse(slot.seq, keep):
            keep = 0
        if self._reuse is not None:  # keeps what the slot held, restores a longer cached prefix
            keep = self._reuse.prepare(slot, job.prompt, keep)
        if not ll.llama_memory_seq_rm(self._memory, slot.seq, keep, -1):
            ll.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
            keep = 0
        slot.tokens = slot.tokens[:keep]
        slot.pending = job.prompt[keep:]
        slot.cached = keep
        slot.started_at = time.monotonic()
        slot.next_token = None
        slot.out = TextOut(job.stop)
        try:
            slot.chain = make_sampler(job.sampling, self._vocab, self.n_ctx_slot)
        except BackendError as err:
            job.events.put(err)
            self._release(slot)
        except Exception:  # one request's setup never stops the others
            log.exception("could not start a request on model %s", self.name)
            job.events.put(BackendError(ErrorCode.INTERNAL_ERROR, "generation failed; see the backend's log"))
            self._release(slot)

    def _can_reuse(self, seq: int, keep: int) -> bool:
        """Whether the cache still holds what the tokens after `keep` attend to (sliding-window layers keep
        only their window: llama.cpp's server checks the same position)."""
        pos_min = self._ll.llama_memory_seq_pos_min(self._memory, seq)
        return pos_min <= 0 or (self._n_swa > 0 and pos_min <= keep - self._n_swa)

    def _drop_cancelled(self) -> None:
        """Free the slots of jobs whose request cancelled them (server.engine.jobs.JobEvents)."""
        for slot in self._slots:
            if slot.busy and slot.job.cancelled:
                self._release(slot)

    def _step(self) -> None:
        """One llama_decode: every generating slot's next token, then prompt chunks in the room left."""
        ll, batch = self._ll, self._batch
        n = fill_batch(batch, self._slots, self._n_batch, self._reuse, self._n_swa)
        if n == 0:
            return
        code = ll.llama_decode(self._ctx, batch)
        if code != 0:
            self._fail_step(code)
            return
        if self._reuse is not None:
            self._reuse.after_decode()
        now = time.monotonic()
        self.counters.decoded(sum(1 for slot in self._slots if slot.busy))
        for slot in self._slots:
            if slot.busy and slot.logit_index is not None:
                token = slot.chain.sample(self._ctx, slot.logit_index)
                self._on_token(slot, token, now)

    def _on_token(self, slot: Slot, token: int, now: float) -> None:
        job = slot.job
        assert job is not None and slot.out is not None
        if job.first_token_at is None:
            job.first_token_at = now
        if self._ll.llama_vocab_is_eog(self._vocab, token):
            self._finish(slot, FinishReason.STOP, now)
            return
        job.n_generated += 1
        text = slot.out.push(token_piece(self._ll, self._vocab, token, job.special))
        if text:
            job.events.put(text)
        if slot.out.stopped:
            self._finish(slot, FinishReason.STOP, now)
        elif job.max_tokens is not None and job.n_generated >= job.max_tokens:
            self._finish(slot, FinishReason.LENGTH, now)
        elif len(slot.tokens) >= self.n_ctx_slot:
            self._finish(slot, FinishReason.LENGTH, now)
        else:
            slot.next_token, slot.state = token, SlotState.GENERATING

    def _finish(self, slot: Slot, reason: FinishReason, now: float) -> None:
        job = slot.job
        assert job is not None and slot.out is not None
        tail = slot.out.flush()
        if tail:
            job.events.put(tail)
        self._stats.record(job.submitted, job.first_token_at, now, len(job.prompt) - slot.cached,
                           job.n_generated)
        self.counters.finished(len(job.prompt) - slot.cached, job.n_generated, slot.started_at,
                               job.first_token_at, now)
        end = Finished(reason, len(job.prompt), job.n_generated, slot.cached, stop_word=slot.out.stop_word)
        self._release(slot)  # first: a client that has its answer sees the slot free
        job.events.put(end)

    def _release(self, slot: Slot) -> None:
        if slot.chain is not None:
            slot.chain.free()
        with self._cond:
            slot.chain, slot.job, slot.out, slot.next_token, slot.pending = None, None, None, None, []
            slot.state = SlotState.IDLE
            slot.last_used = time.monotonic()

    def _fail_step(self, code: int) -> None:
        log.error("llama_decode failed with %d for model %s; the requests in that step end", code, self.name)
        for slot in self._slots:
            if slot.busy:
                slot.job.events.put(BackendError(ErrorCode.INTERNAL_ERROR, "generation failed; see the backend's log"))
                self._ll.llama_memory_seq_rm(self._memory, slot.seq, -1, -1)
                slot.tokens = []
                self._release(slot)

    def _shutdown(self) -> None:
        with self._cond:
            self._stopping = True
            waiting, self._waiting = list(self._waiting), deque()
            tasks, self._tasks = list(self._tasks), deque()
        gone = ServerBusy(f"model {self.name} was unloaded; try again")
        for job in waiting:
            job.events.put(gone)
        for slot in self._slots:
            if slot.busy:
                slot.job.events.put(gone)
                self._release(slot)
        for task in tasks:
            task()  # runs with _stopping set: callers get their answer instead of waiting forever
        self._ll.llama_batch_free(self._batch)
        if self._reuse is not None:
            self._reuse.save_all()
        if self._final is not None:
            self._final()
