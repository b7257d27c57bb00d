"""One background thread that runs short callbacks at given times.

The pool uses it for retry backoffs, queue timeouts and pacing of thread work.
Callbacks must be quick and must not block. Whatever one raises (any
``BaseException``: on this thread even ``SystemExit`` or ``KeyboardInterrupt``
could only end the thread, and with it every later timer) is logged, handed
to the timer's ``on_error`` so the caller can settle what the timer was for,
and the thread carries on. Delays of any size are accepted: the thread waits
in pieces the platform can wait (see :mod:`.waits`). Cancelled timers are
dropped lazily and compacted so a long timeout that is usually cancelled
costs O(log n) and bounded memory.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .forks import renew_after_fork
from .waits import clamp_wait

log = logging.getLogger("s3pool_plugins.timers")

_WHEN, _SEQ, _FN, _ARGS, _LIVE, _ON_ERROR = 0, 1, 2, 3, 4, 5


class TimerHandle:
    """A scheduled callback; :meth:`cancel` prevents it from running."""

    __slots__ = ("_entry", "_service")

    def __init__(self, entry: list[Any], service: TimerService) -> None:
        self._entry = entry
        self._service = service

    def cancel(self) -> bool:
        """Cancel; returns False if it already ran or was cancelled."""
        return self._service._cancel(self._entry)


class TimerService:
    """Runs ``fn(*args)`` at ``time.monotonic()`` deadlines on a daemon thread."""

    def __init__(self, name: str = "s3pool-timers") -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[list[Any]] = []
        self._cancelled = 0
        self._counter = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        renew_after_fork(self)

    def after_fork_in_child(self) -> None:
        """In a forked child: a new lock, and a thread of its own for the timers pending (the next
        :meth:`call_at` starts one if none are)."""
        self._cond = threading.Condition(threading.Lock())
        self._thread = None
        if self._heap and not self._closed:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def call_later(
        self,
        delay: float,
        fn: Callable[..., object],
        *args: object,
        on_error: Callable[[BaseException], object] | None = None,
    ) -> TimerHandle:
        """Run ``fn(*args)`` after ``delay`` seconds (any float; NaN or negative: now).

        If ``fn`` raises, ``on_error(error)`` is called on the timer thread
        (it must settle whatever the timer was for, quickly).
        """
        return self.call_at(time.monotonic() + (delay if delay > 0 else 0.0), fn, *args, on_error=on_error)

    def call_at(
        self,
        when: float,
        fn: Callable[..., object],
        *args: object,
        on_error: Callable[[BaseException], object] | None = None,
    ) -> TimerHandle:
        """Run ``fn(*args)`` at monotonic time ``when``; see :meth:`call_later` for ``on_error``."""
        if when != when:  # NaN never compares due: run it now rather than never
            when = time.monotonic()
        entry: list[Any] = [when, next(self._counter), fn, args, True, on_error]
        with self._cond:
            if self._closed:
                raise RuntimeError("timer service is closed")
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0] is entry:
                self._cond.notify()
        return TimerHandle(entry, self)

    def pending(self) -> int:
        """Timers scheduled and not yet run or cancelled."""
        with self._cond:
            return len(self._heap) - self._cancelled

    def close(self) -> None:
        """Stop the thread; pending timers never run."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cancelled = 0
            self._cond.notify()

    def _cancel(self, entry: list[Any]) -> bool:
        with self._cond:
            if not entry[_LIVE]:
                return False
            entry[_LIVE] = False
            entry[_FN] = entry[_ARGS] = entry[_ON_ERROR] = None
            self._cancelled += 1
            if self._cancelled > 256 and self._cancelled * 2 > len(self._heap):
                self._heap = [e for e in self._heap if e[_LIVE]]
                heapq.heapify(self._heap)
                self._cancelled = 0
            return True

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while True:
                    if self._closed:
                        return
                    heap = self._heap
                    while heap and not heap[0][_LIVE]:
                        heapq.heappop(heap)
                        self._cancelled -= 1
                    if not heap:
                        cond.wait()
                        continue
                    delay = heap[0][_WHEN] - time.monotonic()
                    if delay <= 0:
                        entry = heapq.heappop(heap)
                        entry[_LIVE] = False
                        fn, args, on_error = entry[_FN], entry[_ARGS], entry[_ON_ERROR]
                        entry[_FN] = entry[_ARGS] = entry[_ON_ERROR] = None
                        break
                    cond.wait(clamp_wait(delay))
            _run_entry(fn, args, on_error)


def _run_entry(
    fn: Callable[..., object], args: tuple[object, ...], on_error: Callable[[BaseException], object] | None
) -> None:
    """Run one timer's callback; nothing it raises leaves this function."""
    try:
        fn(*args)
    except BaseException as error:
        log.exception("timer callback %r failed; the timer thread carries on", fn)
        if on_error is not None:
            try:
                on_error(error)
            except BaseException:
                log.exception("the error handler %r of a failed timer callback failed too", on_error)
