"""Pull-through for peers (MIRROR_PULL_THROUGH): a file a peer asks for and this proxy lacks becomes a pull that
plans in its queue slot (start_detached), so the request that missed answers 503 at once and no
number of misses holds request threads or delays probes (docs/api.md, Serving peers). How a failed one ended is kept
for a while, so the peer that comes back learns it (a 404 lets it move on) instead of starting it again."""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

from core import naming
from proxy.pulls.events import Evicting, Failed, PullEvent
from proxy.pulls.jobs import PullJob
from proxy.pulls.planning import Plan
from proxy.pulls.request import PullRequest
from proxy.pulls.service import PullService

OUTCOME_TTL_S = 30.0  # how long a failed pull-through answers the askers that come back
OUTCOMES_MAX = 1024  # failed ones remembered at most (the oldest are forgotten first)


class PullThrough:
    def __init__(self, service: PullService, clock: Callable[[], float] = time.monotonic):
        self._service, self._clock = service, clock
        self._failed: OrderedDict[tuple, tuple[Failed, float]] = OrderedDict()
        self._lock = threading.Lock()

    def ask(self, request: PullRequest, admit: Callable[[Plan], None]) -> tuple[PullEvent | None, int]:
        """How the pull of `request.filename` ended (when it failed within OUTCOME_TTL_S, or ended already),
        else None while it is queued or running (started now if none was); and the bytes it has so far.

        Raises:
            ProxyError: pull_queue_full, model_busy.
        """
        key = (request.repo.lower(), request.revision, request.filename)
        with self._lock:
            failed = self._failed.get(key)
            if failed is not None and failed[1] > self._clock():
                return failed[0], 0
            self._failed.pop(key, None)
        job = start_detached(self._service, request, admit, on_end=lambda job: self._ended(key, job))
        return (job.latest if job.done else None), getattr(job.latest, "completed", 0) or 0

    def _ended(self, key: tuple, job: PullJob) -> None:
        final = job.latest
        if not isinstance(final, Failed):
            return
        with self._lock:
            self._failed[key] = (final, self._clock() + OUTCOME_TTL_S)
            self._failed.move_to_end(key)
            while len(self._failed) > OUTCOMES_MAX:
                self._failed.popitem(last=False)


def start_detached(service: PullService, request: PullRequest, admit: Callable[[Plan], None] = lambda plan: None,
                   on_end: Callable[[PullJob], None] = lambda job: None) -> PullJob:
    """A pull of `request.filename` whose planning runs in its job, in the pull queue, so the caller never waits
    on the source (a peer's miss); the job already fetching that file when there is one. `admit(plan)` may refuse
    the plan by raising ProxyError; `on_end` is told when a new job ends.

    Raises:
        ProxyError: pull_queue_full, model_busy.
    """
    key, planner, planned = naming.basename(request.filename), service.planner, []

    def run(job: PullJob) -> None:
        plan = planner.plan(request)
        admit(plan)
        if (cached := planner.cached(plan)) is not None:
            return job.publish(cached)
        planned.append(plan)
        for filename in planner.check_space(plan):
            job.publish(Evicting(filename))
        service.notes.save(plan)
        service.run_noted(job, plan)

    def ended(job: PullJob) -> None:
        for plan in planned:
            planner.release(plan.key)
        service.metrics.count_job(job)
        on_end(job)

    return service.jobs.submit(key, request.repo, lambda: PullJob(key, request.repo, key, run, ended))[0]
