"""Slots kept past the end of their call (``Call.keep_slot``), and the one watch that reclaims idle ones.

A result that still costs after its call returned (a streamed response
body) keeps the call's slot in a :class:`SlotLease` until it is consumed. The
lease gives the slot back exactly once: when its owner releases it, or when
nobody touched it for its idle bound. One :class:`IdleWatch` per pool looks
after every open lease with a single timer, so opening and closing a lease
costs a dict entry, not a timer.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .context import SlotHolder

if TYPE_CHECKING:
    from .scheduler import Scheduler

log = logging.getLogger("s3pool_plugins.leases")


class SlotLease:
    """A slot kept past the end of its call (see ``Call.keep_slot``), until released once.

    :meth:`release` gives it back the first time and does nothing later
    (with the slot of the call's partition gate, if it held one); it is
    safe from any thread, but not from a finalizer (it takes the pool's
    locks): a finalizer hands it to a thread of its own. While the lease is
    open it counts in ``stats().leases`` and ``stats().active``.
    """

    __slots__ = (
        "__weakref__",
        "_gate",
        "_holder",
        "_last_touch",
        "_on_idle",
        "_partition",
        "_pool",
        "_watch",
        "idle_timeout",
        "own",
    )

    def __init__(
        self,
        pool: Any,
        holder: SlotHolder,
        idle_timeout: float,
        on_idle: Callable[[SlotLease], object] | None,
        *,
        own: bool,
        gate: Scheduler | None = None,
        partition: str | None = None,
    ) -> None:
        self._pool = pool
        self._holder: SlotHolder | None = holder
        self._gate = gate
        self._partition = partition
        self.idle_timeout = idle_timeout
        """Seconds without :meth:`touch` after which the slot goes back by itself."""
        self._on_idle = on_idle
        self.own = own
        """True if the slot was the call's own; False if the call ran nested under a slot another lease keeps."""
        self._last_touch = time.monotonic()
        self._watch: IdleWatch = pool._lease_watch
        self._watch.add(self)

    @property
    def holder(self) -> SlotHolder | None:
        """The slot while the lease is open; None once it went back."""
        return self._holder

    @property
    def released(self) -> bool:
        """True once the slot went back (by :meth:`release` or for idleness)."""
        return self._holder is None

    @property
    def idle_since(self) -> float:
        """``time.monotonic()`` of the last :meth:`touch` (or of the lease's start)."""
        return self._last_touch

    def touch(self) -> None:
        """Note activity now: the idle bound counts from the last touch."""
        self._last_touch = time.monotonic()

    def release(self) -> bool:
        """Give the slot back; True the first time, False afterwards."""
        holder = self._watch.close(self, reclaimed=False)
        if holder is None:
            return False
        self._give_back(holder)
        return True

    def _give_back(self, holder: SlotHolder) -> None:
        """Give back the pool's slot and, if the call held one, its partition gate's (once: after close)."""
        try:
            self._pool._scheduler.release(holder=holder)
        finally:
            if self._gate is not None:
                self._gate.release()
                self._pool._limits.leave(self._partition)

    def _reclaim(self) -> None:
        """For the watch: the lease was idle for its bound; give the slot back (once) and say so."""
        holder = self._watch.close(self, reclaimed=True)
        if holder is None:
            return
        self._give_back(holder)
        if self._on_idle is not None:
            self._on_idle(self)

    def __repr__(self) -> str:
        return f"<SlotLease {'released' if self._holder is None else 'held'}>"


class IdleWatch:
    """The open leases of one pool, and one timer that reclaims those idle for their bound.

    The timer is armed for the earliest moment a lease could have been idle
    for its bound (also when a lease with a shorter bound opens while it is
    armed for later); when it fires it reclaims the leases that were, and
    arms again while any lease is open. ``call_later(delay, fn)`` is the pool's
    timer service: a bound method of the pool, held weakly (the pool owns the
    watch; a strong reference back would make a cycle that outlives a
    ``del`` until the collector runs).
    """

    def __init__(self, call_later: Callable[[float, Callable[[], None]], object]) -> None:
        self._call_later_ref = weakref.WeakMethod(call_later)
        self._lock = threading.Lock()
        self.reclaimed = 0
        """Leases closed because they were idle for their bound (read only)."""
        self._open: dict[SlotLease, None] = {}
        self._due: float | None = None
        """``time.monotonic()`` at which the live timer fires, or None when none is armed."""

    def add(self, lease: SlotLease) -> None:
        """Watch ``lease`` (just opened): count it, and mark its slot as kept by a lease."""
        holder = lease.holder
        with self._lock:
            self._open[lease] = None
            if holder is not None:
                holder.leases += 1
        try:
            self._arm(lease.idle_since + lease.idle_timeout)
        except BaseException:  # not watched, so not open: the caller gives the slot back
            with self._lock:
                self._open.pop(lease, None)
                lease._holder = None
                if holder is not None:
                    holder.leases -= 1
            raise

    def close(self, lease: SlotLease, reclaimed: bool) -> SlotHolder | None:
        """Close ``lease`` once: its slot for the caller to give back, or None if it was closed before."""
        with self._lock:
            holder, lease._holder = lease._holder, None
            if holder is None:
                return None
            self._open.pop(lease, None)
            holder.leases -= 1
            if reclaimed:
                self.reclaimed += 1
        return holder

    def counts(self) -> tuple[int, int]:
        """(open leases, leases reclaimed so far), read together."""
        with self._lock:
            return len(self._open), self.reclaimed

    def _arm(self, deadline: float) -> None:
        """Have a sweep run at ``deadline`` (monotonic seconds) unless the live timer fires by then."""
        with self._lock:
            if not self._open or (self._due is not None and self._due <= deadline):
                return
            previous, self._due = self._due, deadline
        try:
            self._call_later(max(0.0, deadline - time.monotonic()), deadline)
        except BaseException:
            with self._lock:
                if self._due == deadline:  # the timer armed before (if any) is still the live one
                    self._due = previous
            raise

    def _sweep(self, due: float) -> None:
        """Reclaim the leases idle for their bound; ``due``: when this timer was armed to fire."""
        now = time.monotonic()
        with self._lock:
            if self._due == due:  # the live timer (not one superseded by an earlier one)
                self._due = None
            due_leases = [lease for lease in self._open if lease.idle_since + lease.idle_timeout <= now]
        for lease in due_leases:
            try:
                lease._reclaim()
            except Exception:  # an on_idle callback failed: the other leases are still watched
                log.exception("reclaiming the idle %r failed", lease)
        with self._lock:
            if not self._open:
                return
            earliest = min(lease.idle_since + lease.idle_timeout for lease in self._open)
        self._arm(earliest)

    def _call_later(self, delay: float, due: float) -> None:
        """Arm the sweep due at ``due`` in ``delay`` seconds on the pool's timer service (none once the pool
        is gone)."""
        call_later = self._call_later_ref()
        if call_later is not None:
            call_later(delay, functools.partial(self._sweep, due))
