"""``add_batch`` and ``add_batch_async``: one task per item, results in input order."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from .async_tasks import AsyncTasksMixin
from .batch import BatchCallbackError, BatchItemError, BatchResult
from .options import DEFAULT_OPTIONS, TaskOptions, task_options
from .thread_tasks import ThreadTasksMixin

log = logging.getLogger("s3pool_plugins.pool")

_batch_ids = itertools.count(1)


def _checked_items(items: Iterable[Any]) -> list[Any]:
    """The batch as a list, refusing it whole if any item is not callable."""
    checked = list(items)
    for index, item in enumerate(checked):
        if not callable(item):
            raise TypeError(f"batch item {index} is not callable ({type(item).__name__}); nothing was submitted")
    return checked


class BatchMixin(ThreadTasksMixin, AsyncTasksMixin):
    """The seed's ``addBatch``, for thread work and for async work."""

    def add_batch(
        self,
        items: Sequence[Callable[[], Any]],
        *,
        on_item_complete: Callable[[int, Any], Any] | None = None,
        on_item_error: Callable[[int, BaseException], Any] | None = None,
        _options: TaskOptions = DEFAULT_OPTIONS,
        **options: Any,
    ) -> BatchResult:
        """Run every callable in ``items`` as its own task and wait for all.

        ``on_item_complete(index, result)`` and ``on_item_error(index, error)``
        run in the calling thread as items settle. Task options (see
        :meth:`options`) apply to every item; each task's metadata also gets
        ``batch_id`` and ``batch_index``. Returns a :class:`BatchResult` with
        results in input order; a callback that raises is logged and listed in
        ``callback_errors``.
        """
        items = _checked_items(items)
        bound_options = _options.merged(task_options(options)) if options else _options
        batch_id = f"batch-{next(_batch_ids)}"
        futures: dict[concurrent.futures.Future[Any], int] = {}
        for index, item in enumerate(items):
            futures[self._submit(item, (), {}, self._batch_options(bound_options, batch_id, index))] = index
        results: list[Any] = [None] * len(items)
        errors: list[BatchItemError] = []
        callback_errors: list[BatchCallbackError] = []
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except BaseException as error:
                errors.append(BatchItemError(index, error))
                self._batch_callback(on_item_error, "on_item_error", index, error, callback_errors)
            else:
                self._batch_callback(on_item_complete, "on_item_complete", index, results[index], callback_errors)
        errors.sort(key=lambda e: e.index)
        return BatchResult(batch_id, results, errors, callback_errors)

    async def add_batch_async(
        self,
        items: Sequence[Callable[[], Awaitable[Any]]],
        *,
        on_item_complete: Callable[[int, Any], Any] | None = None,
        on_item_error: Callable[[int, BaseException], Any] | None = None,
        _options: TaskOptions = DEFAULT_OPTIONS,
        **options: Any,
    ) -> BatchResult:
        """:meth:`add_batch` for coroutine functions, run on the caller's loop.

        Callbacks run on the loop as items settle. Cancelling the call cancels
        the items still running.
        """
        items = _checked_items(items)
        bound_options = _options.merged(task_options(options)) if options else _options
        batch_id = f"batch-{next(_batch_ids)}"
        results: list[Any] = [None] * len(items)
        errors: list[BatchItemError] = []
        callback_errors: list[BatchCallbackError] = []

        async def one(index: int, item: Callable[[], Awaitable[Any]]) -> None:
            try:
                results[index] = await self._run_async(
                    item, (), {}, self._batch_options(bound_options, batch_id, index)
                )
            except asyncio.CancelledError as error:
                if sys.version_info >= (3, 11):
                    current = asyncio.current_task()
                    if current is not None and not current.cancelling():
                        # the item's own work raised CancelledError: that item failed, the batch goes on
                        errors.append(BatchItemError(index, error))
                        self._batch_callback(on_item_error, "on_item_error", index, error, callback_errors)
                        return
                raise  # the batch itself is being cancelled
            except BaseException as error:
                errors.append(BatchItemError(index, error))
                self._batch_callback(on_item_error, "on_item_error", index, error, callback_errors)
            else:
                self._batch_callback(on_item_complete, "on_item_complete", index, results[index], callback_errors)

        tasks = [asyncio.ensure_future(one(i, item)) for i, item in enumerate(items)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for pending in tasks:
                pending.cancel()
            raise
        errors.sort(key=lambda e: e.index)
        return BatchResult(batch_id, results, errors, callback_errors)

    @staticmethod
    def _batch_options(options: TaskOptions, batch_id: str, index: int) -> TaskOptions:
        item_options = TaskOptions()
        for slot in TaskOptions.__slots__:
            setattr(item_options, slot, getattr(options, slot))
        item_options.metadata = {**(options.metadata or {}), "batch_id": batch_id, "batch_index": index}
        return item_options

    def _batch_callback(
        self,
        callback: Callable[..., Any] | None,
        which: str,
        index: int,
        value: Any,
        sink: list[BatchCallbackError],
    ) -> None:
        if callback is None:
            return
        try:
            callback(index, value)
        except Exception as error:
            log.exception("%s raised for batch item %d", which, index)
            sink.append(BatchCallbackError(index, which, error))
