"""A mutex that yields instead of queueing behind a thread that cannot run.

Under the GIL, a thread that blocks on a contended ``threading.Lock`` is
handed the lock by the OS as soon as the holder releases it, but cannot use
it until it gets the GIL back; meanwhile the releasing thread runs on and
blocks on the lock itself at its next critical section. Two threads that
share a hot lock then swap the GIL on every acquisition (a lock convoy),
which made the pool several times slower than its own CPU cost.

:class:`YieldingLock` tries the lock without blocking and, when it is taken,
gives up the GIL (``time.sleep(0)``) so the holder can finish its short
critical section; only after many failed tries does it block. Critical
sections guarded by it must be short and must not block.
"""

from __future__ import annotations

import threading
import time

_SPINS = 64


class YieldingLock:
    """A non-reentrant mutex for very short critical sections (``with lock:``)."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @property
    def mutex(self) -> threading.Lock:
        """The underlying lock, for the hottest paths: ``if not mutex.acquire(False):
        lock.acquire_contended()``, then ``mutex.release()`` (two C calls instead of
        ``__enter__``/``__exit__``)."""
        return self._lock

    def __enter__(self) -> None:
        if not self._lock.acquire(False):
            self.acquire_contended()

    def acquire_contended(self) -> None:
        """Acquire after a failed non-blocking try: yield the GIL a few times, then block."""
        lock = self._lock
        sleep = time.sleep
        for _ in range(_SPINS):
            sleep(0)
            if lock.acquire(False):
                return
        lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def locked(self) -> bool:
        """True while some thread holds the lock."""
        return self._lock.locked()
