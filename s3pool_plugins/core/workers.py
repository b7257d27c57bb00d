"""Threads that run the pool's synchronous tasks once they hold a slot.

Threads are started on demand (one per concurrently running task at most,
reusing idle ones first) and exit after ``idle_timeout`` seconds without
work, so the thread count follows the concurrency limit up and down. The
threads are daemons; the pool's ``shutdown(wait=True)`` (also run at
interpreter exit) waits for the work itself.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("s3pool_plugins.workers")

_STOP = None


class WorkerThreads:
    """Runs callables on a growing and shrinking set of daemon threads."""

    def __init__(self, name: str, idle_timeout: float = 30.0) -> None:
        self._name = name
        self._idle_timeout = idle_timeout
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads = 0
        self._counter = 0

    @property
    def threads(self) -> int:
        """Threads alive now."""
        return self._threads

    def run(self, job: Callable[[], None]) -> None:
        """Run ``job()`` on an idle thread, or on a new one if none is idle."""
        self._work.put(job)
        if self._idle.acquire(blocking=False):
            return
        with self._lock:
            self._threads += 1
            self._counter += 1
            number = self._counter
        thread = threading.Thread(target=self._loop, name=f"{self._name}-worker-{number}", daemon=True)
        thread.start()

    def close(self) -> None:
        """Ask idle threads to exit (busy ones exit after their job)."""
        with self._lock:
            count = self._threads
        for _ in range(count):
            self._work.put(_STOP)

    def _loop(self) -> None:
        work = self._work
        try:
            while True:
                try:
                    job = work.get(timeout=self._idle_timeout)
                except queue.Empty:
                    if self._idle.acquire(blocking=False):
                        return
                    continue
                if job is None:
                    return
                try:
                    job()
                except BaseException:
                    log.exception("s3pool worker job failed")
                finally:
                    del job
                self._idle.release()
        finally:
            with self._lock:
                self._threads -= 1
