"""Pause, resume, limit changes, drain, stop and shutdown."""

from __future__ import annotations

import asyncio
import threading
from typing import TypeVar

from ..errors import ConfigurationError, PoolStopped
from .async_tasks import AsyncTasksMixin
from .context import holds_slot
from .scheduler import LoopWaiter, _resolve
from .thread_tasks import ThreadTasksMixin, _stopped_while_waiting, _SyncTask
from .validation import MAX_CONCURRENCY, positive_int
from .waits import wait_until

_Pool = TypeVar("_Pool", bound="LifecycleMixin")

CLOSED_LOOP_CHECK = 1.0
"""Seconds between two checks, by a waiting ``drain()``, for async tasks whose event loop was closed."""


def _check_drain_timeout(timeout: object) -> None:
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ConfigurationError("timeout", "a number of seconds >= 0, or None to wait as long as it takes", timeout)


class LifecycleMixin(ThreadTasksMixin, AsyncTasksMixin):
    """Controls that apply to the whole pool."""

    def set_concurrency(self, limit: int, reason: str = "set_concurrency") -> None:
        """Change the limit now. Lowering it never cancels running work; no new
        attempt starts until ``active`` is below the new limit."""
        positive_int("concurrency", limit, maximum=MAX_CONCURRENCY)
        change = None if self._limits is None else self._limits.pin(limit)
        old = self._scheduler.set_limit(limit)
        if old != limit:
            self._notify("s3pool_concurrency_changed", old=old, new=limit, reason=reason)
        if change is not None:
            self._notify("s3pool_limit_changed", change=change)

    def pause(self) -> None:
        """Stop starting new attempts; running work continues, queued work waits."""
        if self._limits is not None:
            self._limits.set_paused(True)  # gates first: nothing takes a gate slot or a token meanwhile
        if self._scheduler.set_paused(True):
            self._notify("s3pool_pool_paused")

    def resume(self) -> None:
        """Start queued work again after :meth:`pause`."""
        changed = self._scheduler.set_paused(False)
        if self._limits is not None:
            self._limits.set_paused(False)
        if changed:
            self._notify("s3pool_pool_resumed")

    def drain(self, timeout: float | None = None) -> None:
        """Block until nothing is queued, running or waiting to retry.

        Work submitted while draining is waited for too. On a paused pool with
        queued work, ``drain`` sleeps (it does not spin) until the pool is
        resumed and the work is done, so pass a ``timeout`` or resume from
        another thread; ``TimeoutError`` is raised when ``timeout`` seconds
        pass first (any float is accepted). Calling it from inside a pool task,
        or from a callback run on one of the pool's worker threads (a future's
        done callback), raises ``RuntimeError`` (it would wait for itself).

        While it waits it checks every ``CLOSED_LOOP_CHECK`` seconds for async
        tasks whose event loop was closed under them, and settles them as
        cancelled: they could never finish.
        """
        if holds_slot(self) or self._workers.on_worker_thread():
            raise RuntimeError(
                "drain() was called from this pool's own work (a task, or a callback on its worker thread): "
                "it would wait for itself"
            )
        _check_drain_timeout(timeout)
        self._reap_closed_loops()
        done = threading.Event()
        if not self._scheduler.when_idle(done.set) and not wait_until(
            done.wait, timeout, interval=CLOSED_LOOP_CHECK, between=self._reap_closed_loops
        ):
            self._scheduler.forget_idle(done.set)
            raise TimeoutError(self._drain_timeout_message(timeout))
        self._notify("s3pool_pool_drained")

    async def drain_async(self, timeout: float | None = None) -> None:
        """:meth:`drain` for async code: awaits without blocking the loop."""
        if holds_slot(self):
            raise RuntimeError("drain_async() was called from work that holds a slot of this pool")
        _check_drain_timeout(timeout)
        self._reap_closed_loops()
        loop = asyncio.get_running_loop()
        waiter = LoopWaiter(loop)
        if not self._scheduler.when_idle(waiter.on_grant):
            deadline = None if timeout is None else loop.time() + timeout
            try:
                while not waiter.future.done():
                    left = None if deadline is None else deadline - loop.time()
                    if left is not None and left <= 0:
                        raise TimeoutError(self._drain_timeout_message(timeout))
                    await asyncio.wait(
                        (waiter.future,), timeout=CLOSED_LOOP_CHECK if left is None else min(left, CLOSED_LOOP_CHECK)
                    )
                    self._reap_closed_loops()
            finally:  # also when the caller is cancelled: never leave a callback behind
                self._scheduler.forget_idle(waiter.on_grant)
        self._notify("s3pool_pool_drained")

    def _drain_timeout_message(self, timeout: float | None) -> str:
        stats = self.stats()
        paused = " (the pool is paused)" if stats.paused else ""
        return (
            f"drain() timed out after {timeout:g} s with {stats.queued} queued, {stats.active} active, "
            f"{stats.backing_off} waiting to retry and {stats.pending} unsettled{paused}"
        )

    def stop(self) -> None:
        """Reject all queued work with :class:`PoolStopped`; let running attempts finish.

        New work is refused at once; tasks waiting to retry are rejected too.
        Idempotent. Use :meth:`drain` afterwards to wait for running work.
        """
        self._stop(cancel_futures=False)

    def _stop(self, cancel_futures: bool) -> None:
        self._reap_closed_loops()
        self._closed = True
        if cancel_futures:
            for waiter in self._scheduler.queued_waiters():
                if isinstance(waiter, _SyncTask):
                    waiter.cancel_future = True
        with self._backoff_lock:
            self._scheduler.stopped = True
            sync_backoff = list(self._sync_backoff.items())
            self._sync_backoff.clear()
            async_backoff = list(self._async_backoff)
        self._scheduler.stop(lambda: PoolStopped("the pool was stopped before this work started"))
        if self._limits is not None:
            self._limits.stop(lambda: PoolStopped("the pool was stopped before this work started"))
        for entry, handle in sync_backoff:
            if handle is not None:
                handle.cancel()
            self._reject_sync(entry, _stopped_while_waiting(entry.task.last_error))
        for loop, future in async_backoff:
            error = PoolStopped("the pool was stopped while the task waited to retry")
            try:
                loop.call_soon_threadsafe(_resolve, future, error)
            except RuntimeError:
                pass
        self._announce_stop()
        self._release_resources_when_idle()

    def _announce_stop(self) -> None:
        with self._counts_lock:
            if self._stop_announced:
                return
            self._stop_announced = True
        self._notify("s3pool_pool_stopped")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """``Executor.shutdown``: refuse new work, let queued work run, then free threads.

        ``cancel_futures=True`` cancels the futures of tasks that have not
        started (like ``stop()``, but they end cancelled rather than with
        :class:`PoolStopped`). ``wait=True`` blocks until everything is done
        (on a paused pool that means until it is resumed).
        """
        self._closed = True
        if cancel_futures:
            self._stop(cancel_futures=True)
        else:
            self._announce_stop()
        if wait:
            self.drain()
        self._release_resources_when_idle()

    def close(self) -> None:
        """``shutdown(wait=True)``."""
        self.shutdown(wait=True)

    def _release_resources_when_idle(self) -> None:
        if self._scheduler.when_idle(self._release_resources):
            self._release_resources()

    def _release_resources(self) -> None:
        if self._fleet is not None:
            self._fleet.close()
        self._workers.close()
        self._deadlines.close()
        with self._timers_lock:
            timers, self._timers = self._timers, None
        if timers is not None:
            timers.close()

    def __enter__(self: _Pool) -> _Pool:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.shutdown(wait=True)

    async def __aenter__(self: _Pool) -> _Pool:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._closed = True
        self._announce_stop()
        await self.drain_async()
        self._release_resources_when_idle()
