"""call_sync: the caller's context crosses into fsspec's IO loop; timeouts and interrupts cancel and unwind."""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading

import pytest
from fsspec.asyn import get_loop
from fsspec.exceptions import FSTimeoutError

from s3pool_plugins import priority_scope, scope_priority
from s3pool_plugins.adapters.fsspec import call_sync

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


async def _seen() -> tuple[str, float | None, bool]:
    return request_id.get(), scope_priority(), threading.current_thread() is not threading.main_thread()


def test_the_callers_context_runs_on_the_io_loop() -> None:
    token = request_id.set("req-42")
    try:
        with priority_scope(7):
            assert call_sync(get_loop(), _seen) == ("req-42", 7, True)
    finally:
        request_id.reset(token)
    assert call_sync(get_loop(), _seen) == ("unset", None, True)


def test_changes_made_on_the_loop_stay_there() -> None:
    async def change() -> str:
        request_id.set("changed")
        return request_id.get()

    assert call_sync(get_loop(), change) == "changed"
    assert request_id.get() == "unset"


def test_each_thread_brings_its_own_context() -> None:
    results: dict[int, str] = {}

    def worker(n: int) -> None:
        request_id.set(f"thread-{n}")
        results[n] = call_sync(get_loop(), _seen)[0]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {n: f"thread-{n}" for n in range(6)}


def test_errors_and_results_come_back_unchanged() -> None:
    async def fail() -> None:
        raise FileNotFoundError("bucket/key")

    async def add(a: int, b: int = 0) -> int:
        return a + b

    assert call_sync(get_loop(), add, 1, b=2) == 3
    with pytest.raises(FileNotFoundError, match="bucket/key"):
        call_sync(get_loop(), fail)


def test_a_timeout_cancels_the_coroutine_before_the_caller_sees_it() -> None:
    unwound = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            unwound.set()

    with pytest.raises(FSTimeoutError, match="cancelled"):
        call_sync(get_loop(), slow, timeout=0.05)
    assert unwound.is_set()


def test_a_timeout_error_of_the_coroutine_is_an_fs_timeout() -> None:
    async def times_out() -> None:
        raise asyncio.TimeoutError

    with pytest.raises(FSTimeoutError):
        call_sync(get_loop(), times_out)


def test_an_interrupt_while_waiting_cancels_the_coroutine_first(ctrl_c) -> None:
    started, unwound = threading.Event(), threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            unwound.set()

    def interrupt() -> None:
        if started.wait(10):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        call_sync(get_loop(), slow)
    assert unwound.is_set()


def test_calling_from_the_loop_itself_is_refused() -> None:
    async def inner() -> None:
        call_sync(get_loop(), _seen)

    with pytest.raises(NotImplementedError, match="deadlock"):
        call_sync(get_loop(), inner)


def test_a_closed_loop_is_refused() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="not running"):
        call_sync(loop, _seen)
