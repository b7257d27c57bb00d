"""``pool.options(...)``: the pool's task methods with per-task options bound."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from .admission import Slot
from .batch import BatchResult
from .options import TaskOptions, task_options
from .thread_tasks import _iterate_results

T = TypeVar("T")

if TYPE_CHECKING:
    from .pool import OperationsPool


class BoundPool:
    """The pool with per-task options bound: what :meth:`OperationsPool.options` returns.

    It offers the same task methods as the pool; every task it starts uses
    these options (priority, timeout, queue_timeout, retries, metadata, name, tenant).
    """

    __slots__ = ("_pool", "_options")

    def __init__(self, pool: OperationsPool, options: TaskOptions) -> None:
        self._pool = pool
        self._options = options

    def options(self, **options: Any) -> BoundPool:
        """Further options, overriding the ones already bound."""
        return BoundPool(self._pool, self._options.merged(task_options(options)))

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        """Like :meth:`OperationsPool.submit`, with the bound options."""
        return self._pool._submit(fn, args, kwargs, self._options)

    def map(self, fn: Callable[..., T], *iterables: Iterable[Any], timeout: float | None = None) -> Iterator[T]:
        """Like ``Executor.map``, with the bound options."""
        futures = [self.submit(fn, *args) for args in zip(*iterables)]
        return _iterate_results(futures, timeout)

    async def run(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Like :meth:`OperationsPool.run`, with the bound options."""
        result: T = await self._pool._run_async(fn, args, kwargs, self._options)
        return result

    def add_batch(self, items: Sequence[Callable[[], Any]], **kwargs: Any) -> BatchResult:
        """Like :meth:`OperationsPool.add_batch`, with the bound options."""
        return self._pool.add_batch(items, _options=self._options, **kwargs)

    async def add_batch_async(self, items: Sequence[Callable[[], Awaitable[Any]]], **kwargs: Any) -> BatchResult:
        """Like :meth:`OperationsPool.add_batch_async`, with the bound options."""
        return await self._pool.add_batch_async(items, _options=self._options, **kwargs)

    def acquire(self) -> Slot:
        """Like :meth:`OperationsPool.acquire`, with the bound options."""
        return self._pool._acquire(self._options)

    async def acquire_async(self) -> Slot:
        """Like :meth:`OperationsPool.acquire_async`, with the bound options."""
        return await self._pool._acquire_async_slot(self._options)

    def admit(self) -> AbstractContextManager[Slot]:
        """Like :meth:`OperationsPool.admit`, with the bound options."""
        return self._pool._admit(self._options)

    def admit_async(self) -> AbstractAsyncContextManager[Slot]:
        """Like :meth:`OperationsPool.admit_async`, with the bound options."""
        return self._pool._admit_async(self._options)
