"""The pool's side of hedged reads: decide, take a slot for the hedge, count.

An adapter that sends a hedged read asks :meth:`Hedging.plan` for the delay
of its first attempt, reports that attempt's time to a response with
:meth:`Hedging.observe`, and once the delay has passed asks
:meth:`Hedging.try_hedge` for a :class:`HedgeSlot`. A hedge is an attempt:
it holds a slot of the pool (and of its partition's gate) like any attempt,
so the limit is never exceeded. It never waits for one: when no slot is free
now, no hedge is sent (waiting would only add load to a pool that is
already full). Nothing here knows about botocore.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from .options import HEDGED_OPERATIONS, HedgeOptions
from .policy import HedgePolicy

if TYPE_CHECKING:
    from ..limits.controller import LimitController
    from ..scheduler import Scheduler
    from ..task import Task


def _where(task: Task) -> Hashable:
    """The partition a task's hedging state is kept for: its adaptive partition, else its bucket, else None."""
    if task.partition is not None:
        return task.partition
    bucket = task.metadata.get("bucket")
    return bucket if isinstance(bucket, str) else None


class HedgeSlot:
    """The slot one hedge holds; :meth:`release` gives it back (once; later calls do nothing).

    ``leave``: called after the slots are given back, to stop using the
    partition whose gate slot the hedge held (so its gate is not forgotten
    while the hedge is in flight); None when there is no partition gate.
    """

    __slots__ = ("_gate", "_leave", "_lock", "_scheduler", "released")

    def __init__(self, scheduler: Scheduler, gate: Scheduler | None, leave: Callable[[], None] | None = None) -> None:
        self._scheduler = scheduler
        self._gate = gate
        self._leave = leave
        self._lock = threading.Lock()
        self.released = False

    def release(self) -> None:
        """Give the hedge's slot (and its partition gate's) back; thread-safe, idempotent."""
        with self._lock:
            if self.released:
                return
            self.released = True
        try:
            self._scheduler.release()
        finally:
            try:
                if self._gate is not None:
                    self._gate.release()
            finally:
                if self._leave is not None:
                    self._leave()


class Hedging:
    """Hedged reads of one pool (``pool.hedging`` when the ``hedge`` option is on).

    Thread-safe. ``clock`` is a monotonic clock in seconds: the real one by
    default, since hedges race real requests.
    """

    def __init__(
        self,
        options: HedgeOptions,
        scheduler: Scheduler,
        limits: LimitController | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.policy = HedgePolicy(options, clock)
        self._scheduler = scheduler
        self._limits = limits
        self._lock = threading.Lock()
        self._sent = 0
        self._won = 0
        self._saved = 0.0

    @staticmethod
    def hedges(operation: str) -> bool:
        """True if ``operation`` (an S3 operation name) is an idempotent read that may be hedged."""
        return operation in HEDGED_OPERATIONS

    def plan(self, task: Task, operation: str) -> float | None:
        """For a first attempt of ``task`` about to be sent: seconds to wait for its response before a hedge.

        Counts a first attempt for the budget (a retry earns nothing). None: no hedge for this attempt
        (not a hedged operation, a retry, a throttled or paced partition, or
        no delay learned yet); the attempt is still timed (:meth:`observe`).
        """
        if operation not in HEDGED_OPERATIONS:
            return None
        if task.attempt > 1:  # a retry: the call is backing off from a failure, never hedge into it, nor earn
            return None
        self.policy.earn()
        where = _where(task)
        if self.blocked(task, where):
            return None
        return self.policy.delay(operation, where)

    def observe(self, task: Task, operation: str, seconds: float) -> None:
        """``task``'s first attempt of ``operation`` got its response (headers) after ``seconds``."""
        self.policy.observe(operation, _where(task), seconds)

    def note_throttled(self, task: Task) -> None:
        """An attempt of ``task`` was throttled: its partition gets no hedges for ``quiet`` seconds."""
        self.policy.note_throttled(_where(task))

    def blocked(self, task: Task, where: Hashable = None) -> bool:
        """True while hedging ``task`` would send into an overload: its partition (or the pool) was
        throttled lately, or the adaptive limit paces it (a cut it keeps after throttling)."""
        if self.policy.quiet(where if where is not None else _where(task)):
            return True
        limits = self._limits
        if limits is None:
            return False
        for partition in {None, task.partition}:
            learned = limits.learned(partition)
            if learned is not None and learned[1] is not None:
                return True
        return False

    def try_hedge(self, task: Task, first_ask: bool = True) -> HedgeSlot | None:
        """A slot for one hedge of ``task`` now, or None (throttled, no free slot, or no budget).

        Takes the partition gate's slot and the pool's only if both are free
        at once, then a budget token; the caller must :meth:`HedgeSlot.release`
        the slot when the hedge's request (winner or loser) is over. The
        ``first_ask`` at the delay is granted only while the budget is at
        least half full (``burst // 2`` tokens stay in reserve); a later ask
        (the attempt still runs one more delay on) may take the last token.
        So when tokens are scarce they go to the reads that have waited
        longest, the real stragglers, not to reads just past the p95.
        """
        if self.blocked(task):
            return None
        limits, partition = self._limits, task.partition
        # The hedge uses its partition like a call (enter/leave), so the gate it holds a slot of is never
        # forgotten (and replaced by a fresh one that would not count it) while the hedge is in flight.
        gate = limits.enter(partition) if limits is not None and partition is not None else None
        leave = functools.partial(limits.leave, partition) if limits is not None and gate is not None else None
        if gate is not None and not gate.try_acquire():
            if leave is not None:
                leave()
            return None
        if not self._scheduler.try_acquire():
            if gate is not None:
                gate.release()
            if leave is not None:
                leave()
            return None
        slot = HedgeSlot(self._scheduler, gate, leave)
        if not self.policy.try_spend(self.options.burst // 2 if first_ask else 0):
            slot.release()
            return None
        with self._lock:
            self._sent += 1
        return slot

    def won(self, task: Task) -> None:
        """A hedge of ``task`` answered before its first attempt."""
        with self._lock:
            self._won += 1

    def saved(self, seconds: float) -> None:
        """A first attempt that lost to its hedge answered ``seconds`` after the hedge did."""
        with self._lock:
            self._saved += max(0.0, seconds)

    def counts(self) -> tuple[int, int, float]:
        """``(sent, won, time_saved)``: hedges sent, hedges that answered first, and the seconds they saved."""
        with self._lock:
            return self._sent, self._won, self._saved
