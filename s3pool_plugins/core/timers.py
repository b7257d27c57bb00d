"""One background thread that runs short callbacks at given times.

The pool uses it for retry backoffs and per-attempt timeouts of thread work.
Callbacks must be quick and must not block; an exception in one is logged and
does not stop the others. Cancelled timers are dropped lazily and compacted
so a long timeout that is usually cancelled costs O(log n) and bounded memory.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("s3pool_plugins.timers")

_WHEN, _SEQ, _FN, _ARGS, _LIVE = 0, 1, 2, 3, 4


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

    def call_later(self, delay: float, fn: Callable[..., object], *args: object) -> TimerHandle:
        """Run ``fn(*args)`` after ``delay`` seconds."""
        return self.call_at(time.monotonic() + max(0.0, delay), fn, *args)

    def call_at(self, when: float, fn: Callable[..., object], *args: object) -> TimerHandle:
        """Run ``fn(*args)`` at monotonic time ``when``."""
        entry: list[Any] = [when, next(self._counter), fn, args, True]
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
            entry[_FN] = entry[_ARGS] = None
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
                        fn, args = entry[_FN], entry[_ARGS]
                        break
                    cond.wait(delay)
            try:
                fn(*args)
            except Exception:
                log.exception("timer callback %r failed", fn)
