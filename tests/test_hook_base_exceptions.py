"""The plugin manager's implementation cache under concurrent registration, and plugins raising BaseException."""

from __future__ import annotations

import asyncio
import threading

from s3pool_plugins import hookimpl


class Boom(BaseException):
    """A plugin's BaseException (not an Exception)."""


def test_a_plugin_registered_while_a_hook_is_being_cached_is_not_lost(make_pool) -> None:
    """``_impls`` reads the hook's implementations, then stores them in the cache. A register()
    (``pool.on(...)``) from another thread in between clears the cache first, and the stale tuple
    is stored after: the new plugin is never called for that hook, although ``implemented`` says
    it is there. The interleaving is forced by running the register at the store."""
    pool = make_pool(concurrency=2)
    manager = pool.plugin_manager
    started: list[int] = []

    class Watcher:
        @hookimpl
        def s3pool_task_started(self, task) -> None:
            pass

    manager.register(Watcher())
    pool.submit(lambda: None).result(timeout=5)  # warm, then forget the cache
    manager._plugins_changed()

    class RacyCache(dict):
        armed = True

        def __setitem__(self, key, value) -> None:
            if key == "s3pool_task_started" and RacyCache.armed:
                RacyCache.armed = False
                thread = threading.Thread(target=pool.on, args=("pool:taskStarted", lambda t: started.append(t.id)))
                thread.start()
                thread.join()
            super().__setitem__(key, value)

    manager._impl_cache = RacyCache()
    pool.submit(lambda: None).result(timeout=5)  # fills the cache while pool.on() registers
    for _ in range(3):
        pool.submit(lambda: None).result(timeout=5)
    pool.drain(timeout=5)
    assert len(started) >= 3, "the callback subscribed with pool.on() is never called"


def test_a_wrapper_exit_raising_a_base_exception_leaks_no_slot(make_pool) -> None:
    class Exploding:
        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            raise Boom("wrapper exit")

    class Plugin:
        @hookimpl
        def s3pool_wrap_attempt(self, task):
            return Exploding()

    pool = make_pool(concurrency=1, retries=0, plugins=[Plugin()])
    future = pool.submit(lambda: "ok")
    future.exception(timeout=2)  # never resolves on the current code: TimeoutError
    call = pool.begin_call("call")
    call.start_attempt()
    try:
        call.finish(None, "ok")
    except BaseException:
        pass
    pool.drain(timeout=5)
    assert (pool.stats().active, pool.stats().pending) == (0, 0)


def test_a_queued_callback_raising_a_base_exception_in_nested_work_leaks_nothing(make_pool) -> None:
    """Nested sync work counts its unit (and shares the parent's slot) before ``taskQueued``
    runs, outside any try: a BaseException there leaves ``pending`` and ``active`` at 1 for
    good, and every later ``drain()`` times out."""
    pool = make_pool(concurrency=2)
    armed = threading.Event()

    def callback(task) -> None:
        if armed.is_set():
            raise Boom("callback")

    pool.on("pool:taskQueued", callback)

    def parent() -> str:
        armed.set()
        try:
            pool.submit(lambda: None)
        except Boom:
            return "callback raised"
        finally:
            armed.clear()
        return "no error"

    pool.submit(parent).result(timeout=5)
    pool.drain(timeout=5)
    assert (pool.stats().active, pool.stats().pending) == (0, 0)


def test_a_priority_hook_raising_a_base_exception_in_nested_async_work_leaks_nothing(make_pool) -> None:
    """``_join_parent_slot()`` retains the parent's slot before ``_make_task`` asks the
    ``s3pool_task_priority`` hook, outside any try."""
    armed = threading.Event()

    class Priority:
        @hookimpl
        def s3pool_task_priority(self, task):
            if armed.is_set():
                raise Boom("priority")
            return None

    pool = make_pool(concurrency=2, plugins=[Priority()])

    async def child() -> None:
        return None

    async def parent() -> str:
        armed.set()
        try:
            await pool.run(child)
        except Boom:
            return "hook raised"
        finally:
            armed.clear()
        return "no error"

    async def main() -> str:
        return await pool.run(parent)

    asyncio.run(main())
    pool.drain(timeout=5)
    assert (pool.stats().active, pool.stats().pending) == (0, 0)
