"""The fleet agent: one service thread per pool that joins the pool's schedulers to a fleet backend.

The agent owns everything the pool does with its fleet: it attaches a
:class:`~.unit.FleetUnit` to the pool's scheduler and to each partition's
gate, leases tokens and slots ahead of need, publishes and adopts the learned
state, and keeps the retry budget's local share filled. It never runs under
one of the pool's locks when it calls the backend, and an attempt never
waits for it: an attempt only spends what the agent already leased.

Faults: every backend call goes through a :class:`~.timebox.TimeBox`. The
first failure (:class:`~s3pool_plugins.FleetUnavailable`, or anything a
backend raises) puts every unit under local control at once: local pacing at
this member's last share of the fleet's rate, slots capped at what this
member held, the local retry budget. That is logged once at WARNING. The
agent tries the store again every :data:`REJOIN_INTERVAL` seconds and, when
it answers, rejoins (logged at INFO). The thread survives anything one round
does (it logs and goes on).

Fork: a process that forks keeps its agents in the child as copies with no
thread, the parent's member id, the parent's leased tokens and slots, and
the parent's connections. A fork handler (:mod:`..forks`) turns each
live agent's copy into a new member (:meth:`FleetAgent.after_fork_in_child`):
it drops what the parent leased without giving it back (the parent still
holds and uses it), has the backend drop the parent's connections
(:meth:`FleetBackend.after_fork`), and starts a thread of its own.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

from ...errors import FleetUnavailable
from ..forks import forget_after_fork, renew_after_fork
from ..limits.controller import LimitController
from ..scheduler import Scheduler
from ..waits import clamp_wait
from .backend import FleetBackend
from .budget import FleetRetryBudget
from .stats import FleetStats
from .timebox import TimeBox
from .unit import FleetUnit

log = logging.getLogger("s3pool_plugins.fleet")

T = TypeVar("T")

REJOIN_INTERVAL = 1.0
"""Seconds between two tries of a store that is away."""

BUSY_TICK = 0.01
"""Seconds between two rounds while some unit has work."""

REFUND_EVERY = 1.0
"""Seconds between two returns of retry refunds and rewards to the fleet, unless half a share piled up first."""

IDLE_TICK = 0.05
"""Seconds between two rounds while no unit has work."""


def _member_id(name: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{name}:{uuid.uuid4().hex[:8]}"


class FleetAgent:
    """Joins one pool to a fleet backend (see the module docstring). Start with :meth:`start`."""

    def __init__(
        self,
        backend: FleetBackend,
        *,
        name: str,
        owns_backend: bool,
        controller: LimitController | None,
        fleet_concurrency: int | None,
        budget: FleetRetryBudget | None,
        interval: float,
        clock: Callable[[], float],
        slots_on_pool: bool,
        throttled: Callable[[], int] = lambda: 0,
    ) -> None:
        self.backend = backend
        self._owns_backend = owns_backend
        self._controller = controller
        self._fleet_concurrency = fleet_concurrency
        self._slots_on_pool = slots_on_pool
        self._budget = budget
        self._interval = interval
        self._clock = clock
        self._throttled = throttled
        self._name = name
        self.member = _member_id(name)
        self._box = self._make_box()
        self._lock = threading.Lock()
        self._units: dict[str, FleetUnit] = {}
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.joined = True
        """False while the store is away (local control)."""
        self._closed = False
        self._calls = 0
        self._failures = 0
        self._fallbacks = 0
        self._rejoins = 0
        self._next_try = -math.inf
        self._refunded_at = -math.inf

    def _make_box(self) -> TimeBox:
        return TimeBox(f"{self._name}-fleet", min(1.0, 0.8 * self._interval))  # a fallback within one interval

    # -- wiring --------------------------------------------------------------

    def attach(self, key: str, partition: str | None, scheduler: Scheduler, slots: bool) -> FleetUnit:
        """Join ``scheduler`` (the pool's with ``key`` "", or partition ``partition``'s gate) to the fleet.

        Quick and never blocking (it may run under the limit controller's lock).
        """
        unit = FleetUnit(
            key,
            partition,
            scheduler,
            self.backend.partition(key),
            self.backend.partition(key + "#members"),
            member=self.member,
            controller=self._controller,
            fleet_concurrency=self._fleet_concurrency if slots else None,
            interval=self._interval,
            clock=self._clock,
            throttled=self._throttled,
        )
        with self._lock:
            self._units[key] = unit
            joined = self.joined
        if joined:
            unit.join()
        else:
            unit.leave()
        self._wake.set()
        return unit

    def on_gate(self, partition: str, scheduler: Scheduler) -> None:
        """:attr:`LimitController.on_gate`: a partition's new gate joins the fleet under its key.

        A backend whose ``partition()`` fails (it must not) leaves that gate under local control: a call
        never fails for the fleet's sake.
        """
        try:
            self.attach(partition, partition, scheduler, slots=not self._slots_on_pool)
        except Exception:
            log.exception(
                "s3pool: fleet %s could not take partition %r; it stays local", self.backend.description, partition
            )

    def start(self) -> None:
        """Start the service thread."""
        self._thread = threading.Thread(target=self._run, name=f"{self.member}-fleet-agent", daemon=True)
        self._thread.start()
        renew_after_fork(self)

    def after_fork_in_child(self) -> None:
        """Make this copy, in a process that just forked from the one that built it, a member of its own.

        Runs in the child while it has a single thread. The copy gets a new
        member id, new locks, a new time box, and a backend that dropped the
        parent's connections (:meth:`FleetBackend.after_fork`). Tokens,
        slots, membership and retry tokens the parent leased are dropped
        here and never given back from here: the parent still holds and
        spends them. Each unit rejoins as a new member holding nothing (its
        slot cap is 0 until its own lease), reads the learned state again,
        and a new service thread starts. Counters restart from 0.
        """
        if self._closed:
            return
        self.member = _member_id(self._name)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._box = self._make_box()  # the parent's helper thread does not exist here
        self._thread = None
        self._calls = self._failures = self._fallbacks = self._rejoins = 0
        self._next_try = self._refunded_at = -math.inf
        self.joined = True
        try:
            self.backend.after_fork()
        except Exception:
            log.exception("s3pool: fleet %s could not drop the parent's connections", self.backend.description)
        for unit in list(self._units.values()):
            unit.after_fork(self.member)
        if self._budget is not None:
            self._budget.after_fork()
        self.start()

    # -- the service thread --------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        self._calls += 1
        return self._box.call(fn)

    def _run(self) -> None:
        while not self._stopping:
            busy = False
            try:
                busy = self._round()
            except FleetUnavailable as error:
                self._failures += 1
                self._fall_back(error)
            except BaseException:  # even SystemExit: re-raised here it could only end this thread, for good
                log.exception("s3pool: the fleet agent's round failed; it goes on")
            self._wake.wait(clamp_wait(BUSY_TICK if busy else IDLE_TICK))
            self._wake.clear()

    def _round(self) -> bool:
        """Serve every unit once; True if some unit has work (the next round comes sooner)."""
        now = self._clock()
        if not self.joined:
            if now < self._next_try:
                return False
            self._next_try = now + REJOIN_INTERVAL
            self._call(self.backend.partition("").shared_limit)
            self._rejoin()
        with self._lock:
            units = list(self._units.values())
        busy = False
        for unit in units:
            unit.serve(self._call, now)
            if unit.scheduler.active or len(unit.scheduler.queue):
                busy = True
        self._serve_budget()
        return busy

    def _serve_budget(self) -> None:
        budget = self._budget
        if budget is None:
            return
        part = self.backend.partition("")
        with self._lock:
            pool = self._units.get("")
        capacity = budget.capacity * (1 if pool is None else pool.members)  # the sum of its members' budgets
        now = self._clock()
        flush = now - self._refunded_at >= REFUND_EVERY
        refunds = budget.take_refunds(1 if flush else max(budget.retry_cost, budget.share_size // 2))
        if flush:
            self._refunded_at = now
        if refunds:
            try:
                self._call(lambda: part.give_retry(refunds, capacity))
            except FleetUnavailable:
                budget.on_success(refunds)  # kept for the next try (or the local bucket)
                raise
        wanted = budget.wanted()
        if wanted:
            if self._call(lambda: part.take_retry(wanted, capacity)):
                budget.take_share(wanted)
            elif wanted > budget.retry_cost and self._call(lambda: part.take_retry(budget.retry_cost, capacity)):
                budget.take_share(budget.retry_cost)
        if not budget.joined:  # spend the fleet's tokens from now on (the local bucket until the share was filled)
            budget.set_joined(True)

    def _fall_back(self, error: BaseException) -> None:
        if not self.joined:
            return
        self.joined = False
        self._fallbacks += 1
        self._next_try = self._clock() + REJOIN_INTERVAL
        with self._lock:
            units = list(self._units.values())
        for unit in units:
            unit.leave()
        if self._budget is not None:
            self._budget.set_joined(False)
        log.warning(
            "s3pool: fleet %s (%r) is unavailable (%s); pool control is local until it answers again",
            self.backend.description,
            self.backend.fleet_name,
            error,
        )

    def _rejoin(self) -> None:
        self.joined = True
        self._rejoins += 1
        with self._lock:
            units = list(self._units.values())
        for unit in units:
            unit.join()
        log.info(
            "s3pool: fleet %s (%r) answers again; the pool rejoined it",
            self.backend.description,
            self.backend.fleet_name,
        )

    # -- state and closing ---------------------------------------------------

    def stats(self) -> FleetStats:
        """The fleet state now (see :class:`FleetStats`)."""
        with self._lock:
            units = list(self._units.values())
            pool = self._units.get("")
        return FleetStats(
            description=self.backend.description,
            fleet_name=self.backend.fleet_name,
            member=self.member,
            state="closed" if self._closed else ("joined" if self.joined else "local"),
            store_calls=self._calls,
            store_failures=self._failures,
            fallbacks=self._fallbacks,
            rejoins=self._rejoins,
            members=1 if pool is None else pool.members,
            slots=sum(unit.held for unit in units),
            rate=None if pool is None else pool.fleet_rate,
        )

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread, give back what this member holds (if the store answers), close an owned backend.

        Idempotent; waits at most about ``timeout`` seconds for a busy round.
        """
        if self._closed:
            return
        self._closed = True
        forget_after_fork(self)
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(clamp_wait(timeout))
        if self.joined:
            try:
                with self._lock:
                    units = list(self._units.values())
                for unit in units:
                    unit.release(self._call)
                if self._budget is not None:
                    owed = self._budget.set_joined(False)
                    if owed:
                        part = self.backend.partition("")
                        self._call(lambda: part.give_retry(owed, self._budget_capacity()))
            except FleetUnavailable:
                pass  # the leases expire by themselves
        self._box.close()
        if self._owns_backend:
            try:
                self.backend.close()
            except Exception:
                log.warning("s3pool: closing fleet %s failed", self.backend.description, exc_info=True)

    def _budget_capacity(self) -> int:
        assert self._budget is not None
        return self._budget.capacity


__all__ = ["FleetAgent", "FleetStats"]
