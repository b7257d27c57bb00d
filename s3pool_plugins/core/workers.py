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
from typing import Any

from .forks import renew_after_fork
from .waits import clamp_wait

Job = Callable[[], Any]
"""A unit of work for a worker; it may return another job to run next on the same thread."""

log = logging.getLogger("s3pool_plugins.workers")

_STOP = None


class WorkerThreads:
    """Runs callables on a growing and shrinking set of daemon threads."""

    def __init__(self, name: str, idle_timeout: float = 30.0) -> None:
        self._name = name
        self._idle_timeout = clamp_wait(idle_timeout)
        self._work: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._counter = 0
        self._local = threading.local()
        renew_after_fork(self)

    def after_fork_in_child(self) -> None:
        """In a forked child: no thread of the parent's is here, and jobs queued for them are the parent's
        work (never run here): start from no thread, a new lock and an empty queue."""
        self._work = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = self._threads = 0

    def on_worker_thread(self) -> bool:
        """True when called from one of these threads (from a job, or a callback it runs)."""
        return getattr(self._local, "inside", False)

    @property
    def threads(self) -> int:
        """Threads alive now."""
        return self._threads

    def run(self, job: Job) -> None:
        """Run ``job()`` on an idle thread, or on a new one if none is idle.

        If ``job`` returns a callable, the same thread runs that next (and so
        on), before it looks for queued work again. If no thread can be
        started, the error is raised and ``job`` will never run.
        """
        with self._lock:
            if self._idle:  # reserve an idle thread; it takes the job from the queue
                self._idle -= 1
                self._work.put(job)
                return
            self._threads += 1
            self._counter += 1
            number = self._counter
        thread = threading.Thread(target=self._loop, args=(job,), name=f"{self._name}-worker-{number}", daemon=True)
        try:
            thread.start()
        except BaseException:  # no thread (resources exhausted): the job was not taken, the caller settles it
            with self._lock:
                self._threads -= 1
            raise

    def close(self) -> None:
        """Ask the idle threads to exit; busy ones exit once idle for ``idle_timeout``.

        Safe to race with :meth:`run`: a job submitted at any time still gets
        a thread (a new one if every idle thread is leaving).
        """
        with self._lock:
            count, self._idle = self._idle, 0
        for _ in range(count):
            self._work.put(_STOP)

    def _loop(self, first: Job) -> None:
        work = self._work
        self._local.inside = True
        job: Job | None = first
        try:
            while True:
                while job is not None:
                    try:
                        job = job()
                    except BaseException:
                        log.exception("s3pool worker job failed")
                        job = None
                with self._lock:
                    self._idle += 1
                while True:
                    try:
                        job = work.get(timeout=self._idle_timeout)
                    except queue.Empty:
                        with self._lock:
                            if self._idle:  # nobody reserved this thread: it leaves
                                self._idle -= 1
                                return
                        continue  # reserved: its job is on the way
                    break
                if job is None:
                    return
        finally:
            with self._lock:
                self._threads -= 1
