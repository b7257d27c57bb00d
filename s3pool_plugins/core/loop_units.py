"""Async tasks whose event loop was closed under them: found, so they can be settled.

A coroutine whose event loop is closed while it awaits never runs again; its
``finally`` blocks run only if it is garbage-collected, which never happens
while anything still refers to its asyncio task. Each ``pool.run()`` task in
flight, and each call (``begin_call``) from its first ``start_attempt_async``
until it finishes, is an :class:`AsyncUnit` registered here with its loop, and
:meth:`LoopUnits.take_closed` hands over the units of the loops that are
closed now. It checks ``loop.is_closed()`` once per loop with work in flight,
so a check costs the number of such loops, not of tasks.

Exactly one of the task's own coroutine and the pool's reaper settles a
unit: whoever calls :meth:`AsyncUnit.claim` or :meth:`AsyncUnit.reap` first.
The slot of the running attempt is given back by whoever :meth:`takes
<AsyncUnit.take_holder>` it, so a coroutine closed by the garbage collector
after it was reaped gives nothing back twice.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .calls import Call
    from .context import SlotHolder
    from .scheduler import LoopWaiter, Scheduler
    from .task import Task

_COROUTINE, _REAPER = 1, 2


class AsyncUnit:
    """One ``pool.run()`` task or async call in flight, and what it holds at its current ``await``.

    ``waiter``: the queue entry it waits in for a slot, in ``waits_in`` (the
    pool's scheduler, or a partition's gate); ``holder``: the slot of its
    running attempt (None for nested work, which runs under ``parent``);
    ``backoff``: its entry in the pool's set of async backoffs. The coroutine
    sets them; the reaper reads them only once the loop is closed, when the
    coroutine can no longer change them. ``call``: the :class:`~.calls.Call`
    this unit watches (None for a ``pool.run()`` task); the call keeps its own
    slot and backoff and settles through its own finish path.
    """

    __slots__ = ("task", "loop", "parent", "holder", "waiter", "waits_in", "backoff", "call", "_lock", "_owner")

    def __init__(
        self,
        task: Task,
        loop: asyncio.AbstractEventLoop | None,
        parent: SlotHolder | None,
        call: Call | None = None,
    ) -> None:
        self.task = task
        self.loop = loop
        self.parent = parent
        self.holder: SlotHolder | None = None
        self.waiter: LoopWaiter | None = None
        self.waits_in: Scheduler | None = None
        self.backoff: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self.call = call
        self._lock = threading.Lock()
        self._owner = 0

    def claim(self) -> bool:
        """For the task's coroutine: True if it settles the task (it claimed first, now or before)."""
        if self._owner == _COROUTINE:  # final once set: no lock needed to read it
            return True
        with self._lock:
            if not self._owner:
                self._owner = _COROUTINE
            return self._owner == _COROUTINE

    def reap(self) -> bool:
        """For the reaper: True if it settles the task (the coroutine had not claimed it)."""
        with self._lock:
            if self._owner:
                return False
            self._owner = _REAPER
            return True

    @property
    def lock(self) -> threading.Lock:
        """Held by the coroutine to change what the reaper would give back; :meth:`reap` takes it too."""
        return self._lock

    @property
    def reaped(self) -> bool:
        """True once the reaper settled the task."""
        return self._owner == _REAPER

    def take_holder(self) -> SlotHolder | None:
        """The running attempt's slot, handed to one caller only (None afterwards)."""
        with self._lock:
            holder, self.holder = self.holder, None
            return holder


class LoopUnits:
    """The async units in flight, grouped by event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_loop: dict[asyncio.AbstractEventLoop | None, dict[AsyncUnit, None]] = {}

    def add(self, unit: AsyncUnit) -> None:
        """Register ``unit`` (in flight on ``unit.loop``; without a loop it is not watched)."""
        if unit.loop is None:
            return
        with self._lock:
            units = self._by_loop.get(unit.loop)
            if units is None:
                units = self._by_loop[unit.loop] = {}
            units[unit] = None

    def discard(self, unit: AsyncUnit) -> None:
        """Forget ``unit`` (it settled); a unit not registered is ignored."""
        with self._lock:
            units = self._by_loop.get(unit.loop)
            if units is not None:
                units.pop(unit, None)
                if not units:
                    del self._by_loop[unit.loop]

    def remove(self, unit: AsyncUnit) -> bool:
        """Forget ``unit`` if it is registered: True if it was, so no reaper can ever take it now."""
        with self._lock:
            units = self._by_loop.get(unit.loop)
            if units is None or unit not in units:
                return False
            del units[unit]
            if not units:
                del self._by_loop[unit.loop]
            return True

    def take_closed(self) -> list[AsyncUnit]:
        """Remove and return the units whose loop is closed now."""
        if not self._by_loop:
            return []
        taken: list[AsyncUnit] = []
        with self._lock:
            for loop in [loop for loop in self._by_loop if _is_closed(loop)]:
                taken.extend(self._by_loop.pop(loop))
        return taken

    def __len__(self) -> int:
        with self._lock:
            return sum(len(units) for units in self._by_loop.values())


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop, or None when driven by something other than an asyncio loop."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _is_closed(loop: Any) -> bool:
    try:
        return bool(loop.is_closed())
    except Exception:  # a loop implementation that cannot tell: never reap its work
        return False
