"""OperationsPool: one scheduler for thread work, async work and admitted work.

Three ways in, one limit:

- **run by the pool**: ``submit``/``map``/``enqueue``/``add_batch`` run
  callables on the pool's threads; ``run``/``enqueue_async``/
  ``add_batch_async`` await coroutine functions on the caller's event loop.
  Each task gets retries with backoff and a per-attempt timeout.
- **admitted**: ``admit``/``admit_async`` (and the lower-level
  ``acquire``/``acquire_async``) wait for a slot for work the caller runs
  itself, as the botocore and fsspec adapters do.
- **calls**: ``begin_call`` makes one task of work whose attempts the
  caller drives (an S3 API call in botocore's own attempt loop); the pool
  admits each attempt and decides about retries.
- **nested**: anything started while the current context already holds a
  slot of this pool runs under that slot, without queuing again, so nesting
  can never deadlock.

Threads and any number of event loops share the one :class:`Scheduler`.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextvars
import logging
import time
from typing import Any

from .admission import Slot
from .base import _live_pools
from .batch_runner import BatchMixin
from .bound import BoundPool
from .calls import Call, CallsMixin
from .lifecycle import LifecycleMixin
from .monitoring import MonitoringMixin
from .options import task_options

log = logging.getLogger("s3pool_plugins.pool")

__all__ = ["BoundPool", "Call", "OperationsPool", "Slot"]


class OperationsPool(LifecycleMixin, BatchMixin, CallsMixin, MonitoringMixin, concurrent.futures.Executor):
    """A priority queue with a concurrency limit, retries, timeouts and hooks.

    Build it with keyword options (see :class:`PoolConfig`; unknown or
    invalid ones raise :class:`ConfigurationError` naming the option), or
    with ``config=PoolConfig(...)``. The pool is an
    ``concurrent.futures.Executor``; it is also a context manager (sync and
    async) that waits for queued work and shuts down on exit.

    Thread-safe; usable from any number of threads and event loops at once.
    """

    def options(self, **options: Any) -> BoundPool:
        """Bind per-task options: ``priority``, ``timeout``, ``queue_timeout``,
        ``retries``, ``metadata``, ``name``, ``tenant``.

        ``pool.options(priority=100).submit(fn, x)`` runs ``fn(x)`` at priority
        100; the callable's own keyword arguments are never consumed.
        """
        return BoundPool(self, task_options(options))


EXIT_TIMEOUT = 60.0
"""Seconds the exit hook waits, for all pools together, for their work to finish."""


def _shutdown_live_pools(timeout: float | None = None) -> None:
    """At interpreter exit, let every pool finish its queued work (a paused one is stopped).

    Waits at most ``timeout`` seconds in all, then logs a warning saying what
    each pool left unfinished: work that cannot end (a thread that hangs
    without a timeout, a task on an event loop that no longer runs) never
    keeps the interpreter from exiting. ``timeout`` None: :data:`EXIT_TIMEOUT`.
    """
    timeout = EXIT_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    for pool in list(_live_pools):
        if not isinstance(pool, OperationsPool):
            continue
        stats = pool.stats()  # also settles the tasks of closed event loops
        if stats.closed and stats.pending == 0:
            continue
        try:
            if pool.paused:
                pool.stop()
            pool.shutdown(wait=False)
            pool.drain(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            left = pool.stats()
            log.warning(
                "s3pool: at exit, %r still had %d queued, %d active, %d waiting to retry and %d unsettled "
                "after waiting %g s in all; exiting without them",
                pool,
                left.queued,
                left.active,
                left.backing_off,
                left.pending,
                timeout,
            )
        except Exception:
            log.exception("could not shut down %r at exit", pool)


def _shutdown_live_pools_in_a_fresh_context() -> None:
    # A fresh context: the main thread's may still mark a slot held by work that never ended.
    contextvars.Context().run(_shutdown_live_pools)


atexit.register(_shutdown_live_pools_in_a_fresh_context)
