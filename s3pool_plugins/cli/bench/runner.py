"""One run of the bench: one competitor in one scenario, measured second by second.

A fresh :class:`~s3pool_plugins.testing.ChaosProxy` (seeded) in front of the
bench's :class:`~s3pool_plugins.testing.LocalS3`, a fresh bucket with a few
objects to read, then ``plan.workers`` closed-loop worker threads: each
makes one call after another (alternately a ``PutObject`` of 1 KiB and a
``GetObject`` of 1 KiB, every key under :data:`~.scenarios.PREFIX`) until
the run's duration is over, then finishes the call it is in. The main thread
samples the counters at every whole second and applies the scenario's
timeline of rate changes at the second it names.

A short job (``plan.job`` > 0) is different: the workers share
``plan.job`` PUTs (each to its own key) and stop when none is left; the
run ends when the last call does (its last second is partial), or at
``plan.duration`` seconds, when the job is reported as cut off.

Per second: calls that completed (succeeded, failed; per tenant), and at
the proxy, requests and 503 ``SlowDown`` answers; the pool's limit.
Everything is counted, nothing is estimated. Times are seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..workload import error_name
from .competitors import COMPETITORS, Unavailable, Variant
from .scenarios import PREFIX, Plan, Settings

OBJECT_SIZE = 1024
READ_OBJECTS = 64
"""Objects created before the run (directly, not through the proxy) for the workload's GETs."""
KEYS_PER_WORKER = 4
"""Each worker overwrites its own few keys, so the store stays small."""
DRAIN_TIMEOUT = 60.0
"""The longest the bench waits, after the duration, for the calls in progress to end."""


@dataclass
class RunRecord:
    """What one run measured: per-second series (index ``s`` is the second ``[s, s + 1)``) and totals."""

    scenario: str
    competitor: str
    label: str
    limit: int | None
    status: str = "ok"
    """``ok``, ``skipped`` (the competitor cannot run in this version) or ``failed`` (the run broke)."""
    reason: str | None = None
    duration: int = 0
    warmup: int = 0
    workers: int = 0
    rate: float | None = None
    latency: float = 0.0
    ambient: float = 0.0
    """The share of requests the proxy answered 503 at random."""
    job: int = 0
    """PUTs of a short job (0: a closed loop for ``duration``)."""
    job_time: float | None = None
    """A short job's seconds from the start until its last call ended (None: not a short job)."""
    cut_off: bool = False
    """A short job that was not done when its most seconds were over."""
    succeeded: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    throttled: list[int] = field(default_factory=list)
    capacity: list[float | None] = field(default_factory=list)
    """The prefix's rate (requests/s in all) during each second; None without a limit."""
    limits: list[int | None] = field(default_factory=list)
    by_tenant: dict[str, list[int]] = field(default_factory=dict)
    calls: int = 0
    """Calls that completed (succeeded or failed), the ones that ended after the duration included."""
    failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    proxy_requests: int = 0
    proxy_throttled: int = 0
    unfinished: int = 0
    """Workers still inside a call when the drain timed out."""
    limit_history: list[dict[str, Any]] = field(default_factory=list)
    wall_time: float = 0.0


class _Tally:
    """Per-second counts of completed calls; thread-safe."""

    def __init__(self, seconds: int, tenants: list[str]) -> None:
        self.lock = threading.Lock()
        self.succeeded = [0] * seconds
        self.failed = [0] * seconds
        self.by_tenant = {name: [0] * seconds for name in tenants}
        self.calls = 0
        self.failures = 0
        self.errors: Counter[str] = Counter()

    def add(self, second: int, tenant: str | None, error: BaseException | None) -> None:
        with self.lock:
            self.calls += 1
            in_run = 0 <= second < len(self.succeeded)
            if error is None:
                if in_run:
                    self.succeeded[second] += 1
                    if tenant is not None:
                        self.by_tenant[tenant][second] += 1
            else:
                self.failures += 1
                self.errors[error_name(error)] += 1
                if in_run:
                    self.failed[second] += 1


class _Job:
    """The PUTs of a short job, shared by the workers; ``done`` is set when the last worker has left."""

    def __init__(self, calls: int, workers: int) -> None:
        self._lock = threading.Lock()
        self._next = 0
        self._calls = calls
        self._present = workers
        self.last_end = 0.0
        self.done = threading.Event()

    def take(self) -> int | None:
        """The index of the next PUT to make, or None when every one was taken."""
        with self._lock:
            if self._next >= self._calls:
                return None
            self._next += 1
            return self._next - 1

    def ended(self, at: float) -> None:
        """A call ended ``at`` seconds into the run."""
        with self._lock:
            self.last_end = max(self.last_end, at)

    def leave(self) -> None:
        """A worker is finished (no PUT left, or the run was stopped)."""
        with self._lock:
            self._present -= 1
            if self._present == 0:
                self.done.set()


def _body(worker: int, n: int) -> bytes:
    head = f"{worker}:{n}:".encode()
    return head + b"x" * (OBJECT_SIZE - len(head))


def _limit_prefix(proxy: Any, bucket: str, rate: float, writes_only: bool = False) -> None:
    """``rate`` requests/s in all: half reads, half writes; all of it writes for a job of PUTs."""
    per_class = rate if writes_only else rate / 2
    proxy.limit_prefix(
        f"{bucket}/{PREFIX}", reads_per_second=per_class, writes_per_second=per_class, burst=max(1.0, per_class / 4)
    )


def _history(pool: Any, started: float) -> list[dict[str, Any]]:
    """``pool.limit_history()`` as plain dicts, ``at`` in seconds into the run (when the pool has it)."""
    if pool is None:
        return []
    changes = []
    for change in pool.limit_history():
        entry = change.as_dict()
        entry["at"] = round(change.at - started, 3)
        for name in ("old_rate", "new_rate"):
            if entry[name] is not None:
                entry[name] = round(entry[name], 2)
        changes.append(entry)
    return changes


def run_one(
    server: Any,
    plan: Plan,
    settings: Settings,
    variant: Variant,
    on_second: Callable[[RunRecord, int], None] | None = None,
) -> RunRecord:
    """Run ``variant`` in ``plan`` against ``server``, behind a fresh proxy; returns what it measured."""
    from ...testing import ChaosProxy, Latency

    record = RunRecord(
        scenario=plan.scenario.name,
        competitor=variant.competitor,
        label=variant.label,
        limit=variant.limit,
        duration=plan.duration,
        warmup=plan.warmup,
        workers=plan.workers,
        rate=plan.rate,
        latency=plan.latency,
        ambient=plan.ambient,
        job=plan.job,
    )
    bucket = server.create_bucket()
    direct = server.client()
    for index in range(READ_OBJECTS):
        direct.put_object(Bucket=bucket, Key=f"{PREFIX}read/{index:03d}", Body=_body(-1, index))
    direct.close()

    with ChaosProxy(server.endpoint_url, seed=plan.seed) as proxy:
        proxy.configure(latency=Latency(plan.latency, sigma=0.25), throttle_rate=plan.ambient)
        if plan.rate is not None:
            _limit_prefix(proxy, bucket, plan.rate, writes_only=plan.job > 0)
        try:
            clients = COMPETITORS[variant.competitor].make(server, proxy.endpoint_url, plan, settings, variant)
        except Unavailable as reason:
            record.status, record.reason = "skipped", str(reason)
            return record
        except Exception as error:
            record.status, record.reason = "failed", f"could not make its clients: {type(error).__name__}: {error}"
            return record
        try:
            _measure(record, plan, clients, proxy, bucket, on_second)
        finally:
            clients.close()
    return record


def _measure(
    record: RunRecord,
    plan: Plan,
    clients: Any,
    proxy: Any,
    bucket: str,
    on_second: Callable[[RunRecord, int], None] | None,
) -> None:
    tenants = [name for name, _ in plan.tenants]
    tally = _Tally(plan.duration, tenants)
    stop = threading.Event()
    proxy.reseed(plan.seed)
    proxy.reset_counts()
    started = time.monotonic()

    job = _Job(plan.job, plan.workers) if plan.job else None

    def work(worker: int) -> None:
        tenant = tenants[worker % len(tenants)] if tenants else None
        n = 0
        try:
            while not stop.is_set():
                if job is not None:
                    index = job.take()
                    if index is None:
                        return
                    operation, key, n = "PUT", f"{PREFIX}job/{index:05d}", index
                elif (worker + n) % 2 == 0:
                    operation, key = "PUT", f"{PREFIX}w{worker:03d}/{n % KEYS_PER_WORKER}"
                else:
                    operation, key = "GET", f"{PREFIX}read/{(worker * 7 + n) % READ_OBJECTS:03d}"
                error: BaseException | None = None
                try:
                    clients.call(operation, bucket, key, _body(worker, n) if operation == "PUT" else b"", tenant)
                except Exception as caught:
                    error = caught
                ended = time.monotonic() - started
                tally.add(int(ended), tenant, error)
                if job is not None:
                    job.ended(ended)
                n += 1
        finally:
            if job is not None:
                job.leave()

    threads = [
        threading.Thread(target=work, args=(w,), name=f"s3pool-bench-{w}", daemon=True) for w in range(plan.workers)
    ]
    for thread in threads:
        thread.start()
    previous = proxy.stats()
    rate = plan.rate
    changes = list(plan.changes)
    for second in range(1, plan.duration + 1):
        delay = started + second - time.monotonic()
        done = job is not None and job.done.wait(max(0.0, delay))
        if not done and delay > 0 and job is None:
            time.sleep(delay)
        if done:
            proxy.wait_idle(timeout=5)
        seen = proxy.stats()
        record.requests.append(seen.requests - previous.requests)
        record.throttled.append(seen.throttled - previous.throttled)
        record.capacity.append(rate)
        record.limits.append(None if clients.pool is None else int(clients.pool.concurrency))
        previous = seen
        while changes and changes[0].at <= second:
            rate = changes.pop(0).rate
            _limit_prefix(proxy, bucket, rate)
        if on_second is not None:
            on_second(record, second)
        if done:
            break
    cut_off = job is not None and not job.done.is_set()
    stop.set()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    record.unfinished = sum(thread.is_alive() for thread in threads)
    proxy.wait_idle(timeout=5)
    record.wall_time = time.monotonic() - started
    seen = proxy.stats()
    record.proxy_requests, record.proxy_throttled = seen.requests, seen.throttled
    seconds = len(record.requests)
    if job is not None:
        record.duration = seconds
        record.job_time = job.last_end
        record.cut_off = cut_off
    with tally.lock:
        record.succeeded, record.failed = list(tally.succeeded[:seconds]), list(tally.failed[:seconds])
        record.by_tenant = {name: list(series[:seconds]) for name, series in tally.by_tenant.items()}
        record.calls, record.failures, record.errors = tally.calls, tally.failures, Counter(tally.errors)
    if clients.pool is not None:
        record.limit_history = _history(clients.pool, started)
