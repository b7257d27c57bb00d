"""Per-attempt time limits that cost O(1) to set and to clear.

Most attempts finish long before their timeout, so a deadline is a small
object put in a dict when the attempt starts and taken out when it ends; one
timer (a daemon thread for thread work, one ``call_at`` handle per event loop
for async work) is armed for the earliest live deadline and, when it fires,
expires what is due and re-arms for the next. Live deadlines are bounded by
the attempts running, so each firing scans only a few entries.

A deadline's callback that raises is logged and its ``on_expire_failed`` is
called to settle the attempt another way; the tracker carries on. On the
daemon thread that covers every ``BaseException`` (there, ``SystemExit`` or
``KeyboardInterrupt`` could only end the thread and every later timeout);
on an event loop ``SystemExit`` and ``KeyboardInterrupt`` propagate, as
asyncio's own callbacks let them. Deadlines may be any distance away: the
thread waits in pieces the platform can wait (see :mod:`.waits`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from .forks import renew_after_fork
from .waits import clamp_wait

log = logging.getLogger("s3pool_plugins.deadlines")

_MISSING = object()


class Expirable(Protocol):
    """What the trackers need of a deadline: a time, a flag and a callback."""

    when: float
    expired: bool

    def on_expire(self) -> object:
        """Called once, on the tracker's thread or loop, when ``when`` passes."""

    def on_expire_failed(self, error: BaseException) -> object:
        """Called (on the same thread or loop) if :meth:`on_expire` raised ``error``: settle another way."""


class Deadline:
    """``callback()`` is called once if ``when`` passes before the deadline is discarded.

    If it raises, ``on_error(error)`` is called, when given.
    """

    __slots__ = ("when", "callback", "expired", "on_error")

    def __init__(
        self,
        when: float,
        callback: Callable[[], object],
        on_error: Callable[[BaseException], object] | None = None,
    ) -> None:
        self.when = when
        self.callback = callback
        self.expired = False
        self.on_error = on_error

    def on_expire(self) -> object:
        """Run the callback."""
        return self.callback()

    def on_expire_failed(self, error: BaseException) -> object:
        """Run ``on_error``, if any."""
        return None if self.on_error is None else self.on_error(error)


def _expire_due(active: dict[Expirable, None], now: float) -> tuple[list[Expirable], float]:
    """Remove and return the due deadlines, and the earliest remaining ``when``."""
    due: list[Expirable] = []
    earliest = math.inf
    for deadline in list(active):
        if deadline.when <= now:
            # pop() is atomic: whoever removes the deadline (here, or discard()) owns its outcome
            if active.pop(deadline, _MISSING) is not _MISSING:
                due.append(deadline)
        elif deadline.when < earliest:
            earliest = deadline.when
    return due, earliest


_PROPAGATE_ON_LOOPS = (SystemExit, KeyboardInterrupt)


def _fire(due: list[Expirable], propagate: tuple[type[BaseException], ...] = ()) -> None:
    """Expire ``due``; one that raises is logged and told, then the others still expire.

    An error of a type in ``propagate`` is re-raised once every deadline was handled.
    """
    kept: BaseException | None = None
    for deadline in due:
        deadline.expired = True
        try:
            deadline.on_expire()
        except BaseException as error:
            log.exception("deadline callback of %r failed; the tracker carries on", deadline)
            try:
                deadline.on_expire_failed(error)
            except BaseException:
                log.exception("the error handler of deadline %r failed too", deadline)
            if isinstance(error, propagate) and kept is None:
                kept = error
    if kept is not None:
        raise kept


class ThreadDeadlines:
    """Deadlines in ``time.monotonic()`` seconds, expired on a daemon thread.

    :meth:`add` takes the lock only when it must re-arm or start the timer
    (a deadline earlier than the armed one); with one timeout value, new
    deadlines are always later, so adds and discards are lock-free dict
    operations. Callbacks run on the timer thread and must be quick.

    Lock-free adds are safe against a concurrent scan: the adder inserts,
    bumps ``_adds`` and only then reads ``_armed_at``; the timer publishes
    ``_armed_at`` and only then checks that ``_adds`` did not move during its
    scan (else it scans again). Either the timer sees the new deadline, or the
    adder sees the new ``_armed_at`` and re-arms under the lock.
    """

    def __init__(self, name: str = "s3pool-deadlines") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._active: dict[Expirable, None] = {}
        self._armed_at = math.inf
        self._adds = 0
        self._generation = 0
        self._running = False
        renew_after_fork(self)

    def after_fork_in_child(self) -> None:
        """In a forked child: a new lock; the thread starts again with the next :meth:`add` (or now, for
        deadlines live at fork)."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._generation += 1
        self._running = False
        self._armed_at = math.inf
        if self._active:
            self._armed_at = -math.inf  # the new thread scans at once
            self._running = True
            threading.Thread(target=self._run, args=(self._generation,), name=self._name, daemon=True).start()

    def add(self, deadline: Expirable) -> None:
        """Start watching ``deadline`` (restarting the thread after :meth:`close`)."""
        self._active[deadline] = None
        self._adds += 1
        if self._running and deadline.when >= self._armed_at:
            return
        with self._lock:
            if deadline.when < self._armed_at:
                self._armed_at = deadline.when
                self._cond.notify()
            if not self._running:
                self._running = True
                thread = threading.Thread(target=self._run, args=(self._generation,), name=self._name, daemon=True)
                thread.start()

    def discard(self, deadline: Expirable) -> bool:
        """Stop watching ``deadline``.

        Returns True if it was still live, False if it has expired (or is
        expiring right now on the timer thread): exactly one of this call and
        the expiry wins, so an attempt is settled once.
        """
        return self._active.pop(deadline, _MISSING) is not _MISSING

    def __len__(self) -> int:
        return len(self._active)

    def close(self) -> None:
        """Stop the thread; deadlines live now never fire. A later :meth:`add` restarts it."""
        with self._cond:
            self._generation += 1
            self._running = False
            self._active.clear()
            self._armed_at = math.inf
            self._cond.notify_all()

    def _run(self, generation: int) -> None:
        cond = self._cond
        while True:
            with cond:
                while True:
                    if self._generation != generation:
                        return
                    now = time.monotonic()
                    if self._armed_at <= now:
                        due: list[Expirable] = []
                        while True:
                            adds = self._adds
                            more, earliest = _expire_due(self._active, now)
                            due.extend(more)
                            self._armed_at = earliest
                            if self._adds == adds:
                                break
                        break
                    cond.wait(None if self._armed_at == math.inf else clamp_wait(self._armed_at - now))
            _fire(due)


class LoopDeadlines:
    """Deadlines in ``loop.time()`` seconds for one event loop; use only on that loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._active: dict[Expirable, None] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def add(self, deadline: Expirable) -> None:
        """Start watching ``deadline``."""
        self._active[deadline] = None
        if deadline.when < self._armed_at:
            if self._handle is not None:
                self._handle.cancel()
            self._armed_at = deadline.when
            self._handle = self._loop.call_at(deadline.when, self._on_timer)

    def discard(self, deadline: Expirable) -> bool:
        """Stop watching ``deadline``; False if it already expired."""
        return self._active.pop(deadline, _MISSING) is not _MISSING

    def __len__(self) -> int:
        return len(self._active)

    def _on_timer(self) -> None:
        self._handle = None
        due, earliest = _expire_due(self._active, self._loop.time())
        self._armed_at = math.inf
        if earliest != math.inf:
            self._armed_at = earliest
            self._handle = self._loop.call_at(earliest, self._on_timer)
        _fire(due, _PROPAGATE_ON_LOOPS)


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopDeadlines] = weakref.WeakKeyDictionary()
_per_loop_lock = threading.Lock()
_last: tuple[asyncio.AbstractEventLoop, LoopDeadlines] | None = None


def loop_deadlines(loop: asyncio.AbstractEventLoop) -> LoopDeadlines:
    """The deadline tracker of ``loop`` (one per loop, shared by all pools)."""
    global _last
    last = _last
    if last is not None and last[0] is loop:
        return last[1]
    with _per_loop_lock:
        tracker = _per_loop.get(loop)
        if tracker is None:
            tracker = _per_loop[loop] = LoopDeadlines(loop)
    _last = (loop, tracker)
    return tracker
