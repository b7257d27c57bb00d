"""A simulated S3 prefix and closed-loop workers that drive the real :class:`LimitController` on a fake clock.

The pool's own machinery decides (the controller, its signals and the
default :class:`AdaptiveLimit`); only the service and the workers are
simulated, in steps of ``dt`` seconds, so a minute of traffic runs in well
under a second and the same seed gives the same run. The service answers an
attempt after ``rtt`` seconds, or at once with 503 when its token bucket
(``rate`` per second, a burst of one second's worth) is empty, or at random
with probability ``ambient`` (throttling the pool's rate does not cause).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from s3pool_plugins import AdaptiveLimit, AutoTuning, Limit, LimitChange
from s3pool_plugins.core.limits.controller import LimitController
from s3pool_plugins.core.queue import PriorityTaskQueue
from s3pool_plugins.core.scheduler import Scheduler


@dataclass
class Service:
    """What the prefix takes: ``rate`` attempts per second (None: no limit), and the ambient 503 share."""

    rate: float | None = None
    ambient: float = 0.0
    changes: list[tuple[float, float | None]] = field(default_factory=list)
    """``(at, rate)``: the prefix's rate changes at ``at`` seconds."""


@dataclass
class Second:
    """What one simulated second saw."""

    successes: int = 0
    throttles: int = 0
    min_limit: int = 1 << 30
    min_rate: float = math.inf


@dataclass
class Run:
    seconds: list[Second]
    limits: list[int]
    rates: list[float | None]
    changes: list[LimitChange]
    algorithm: Limit
    finished_at: float | None = None
    """With ``calls`` set: when the last of them succeeded (None: not within the run)."""

    def goodput(self, start: int = 0, end: int | None = None) -> float:
        part = self.seconds[start:end]
        return sum(s.successes for s in part) / max(1, len(part))

    def share(self, start: int = 0, end: int | None = None) -> float:
        part = self.seconds[start:end]
        attempts = sum(s.successes + s.throttles for s in part)
        return sum(s.throttles for s in part) / attempts if attempts else 0.0


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(
    service: Service,
    seconds: float,
    *,
    settings: AutoTuning | None = None,
    workers: int = 32,
    rtt: float = 0.02,
    seed: int = 1,
    dt: float = 0.002,
    make_algorithm: Callable[[AutoTuning], Limit] = AdaptiveLimit,
    calls: int | None = None,
    backoff: float = 0.0,
) -> Run:
    """Run ``seconds`` of closed-loop traffic from ``workers`` against ``service``; see the module docstring.

    ``calls``: a job of that many calls (each retried until it succeeds): the run ends when the last one
    succeeds (``Run.finished_at``), and workers start no attempt beyond what the job still needs.
    ``backoff``: a worker whose attempt was throttled waits a random time in ``[0, backoff]`` before its
    retry, without holding a slot (the pool's full-jitter backoff); 0: it retries at once.
    """
    settings = settings or AutoTuning(max_concurrency=64, target_memory_percent=None)
    clock = _Clock()
    rng = random.Random(seed)
    scheduler = Scheduler(settings.start, PriorityTaskQueue(0.0, clock))
    changes: list[LimitChange] = []
    algorithm = make_algorithm(settings)
    controller = LimitController(
        settings,
        scheduler,
        lambda partition: algorithm,
        clock,
        lambda delay, fn: None,
        changes.append,
        read_memory=lambda: None,
    )
    bucket = float(service.rate or 0.0)
    rate = service.rate
    pending_changes = sorted(service.changes)
    pace_tokens = 1.0
    in_flight: list[tuple[float, bool]] = []  # (ends at, throttled)
    waiting: list[float] = []  # workers backing off after a throttled attempt: when each may retry
    run = Run([Second() for _ in range(math.ceil(seconds))], [], [], changes, algorithm)
    steps = int(seconds / dt)
    succeeded = 0
    for step in range(steps):
        now = clock.now = step * dt
        while pending_changes and pending_changes[0][0] <= now:
            rate = pending_changes.pop(0)[1]
            bucket = min(bucket, rate or 0.0)
        if rate is not None:
            bucket = min(rate, bucket + rate * dt)
        second = run.seconds[min(len(run.seconds) - 1, int(now))]
        while in_flight and in_flight[0][0] <= now:
            _, throttled = heapq.heappop(in_flight)
            scheduler.active = len(in_flight) + 1
            if throttled:
                second.throttles += 1
                controller.on_drop(None, throttling=True)
                if backoff > 0:
                    heapq.heappush(waiting, now + backoff * rng.random())
            else:
                second.successes += 1
                succeeded += 1
                controller.on_success(None, rtt)
        while waiting and waiting[0] <= now:
            heapq.heappop(waiting)
        scheduler.active = len(in_flight)
        if calls is not None and succeeded >= calls:
            run.finished_at = now
            del run.seconds[math.ceil(now) :]
            break
        pacer = scheduler.pacer
        pace = pacer.rate if pacer is not None else None
        if pace is not None:
            pace_tokens = min(max(1.0, pace * 0.1), pace_tokens + pace * dt)
        ready = workers - len(waiting)
        busy = min(ready, scheduler.limit, ready if calls is None else calls - succeeded - len(waiting))
        while len(in_flight) < busy and (pace is None or pace_tokens >= 1.0):
            if pace is not None:
                pace_tokens -= 1.0
            limited = False
            if rate is not None:
                if bucket >= 1.0:
                    bucket -= 1.0
                else:
                    limited = True
            throttled = limited or rng.random() < service.ambient
            heapq.heappush(in_flight, (now + (0.001 if throttled else rtt * (0.8 + 0.4 * rng.random())), throttled))
        scheduler.active = len(in_flight)
        second.min_limit = min(second.min_limit, scheduler.limit)
        second.min_rate = min(second.min_rate, pace if pace is not None else math.inf)
        if step % round(1 / dt) == 0:
            run.limits.append(scheduler.limit)
            run.rates.append(pace)
    return run
