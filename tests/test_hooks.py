"""Hooks, plugins and the seed's event names; a failing plugin never breaks the pool."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from s3pool_plugins import (
    EVENT_SIGNATURES,
    ConfigurationError,
    ErrorClassification,
    OperationsPool,
    hookimpl,
)
from s3pool_plugins.hooks import manager as hook_manager

current_span: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_span", default=None)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    @hookimpl
    def s3pool_task_queued(self, task) -> None:
        self.calls.append(("queued", task.name))

    @hookimpl
    def s3pool_task_started(self, task) -> None:
        self.calls.append(("started", task.attempt))

    @hookimpl
    def s3pool_task_retry(self, task, error, delay, classification) -> None:
        self.calls.append(("retry", (task.attempt, type(error).__name__, delay >= 0, classification.retryable)))

    @hookimpl
    def s3pool_task_completed(self, task, result) -> None:
        self.calls.append(("completed", result))

    @hookimpl
    def s3pool_task_error(self, task, error) -> None:
        self.calls.append(("error", type(error).__name__))

    @hookimpl
    def s3pool_task_metrics(self, metrics) -> None:
        self.calls.append(("metrics", (metrics["status"], metrics["attempts"])))

    @hookimpl
    def s3pool_pool_paused(self) -> None:
        self.calls.append(("paused", None))

    @hookimpl
    def s3pool_pool_resumed(self) -> None:
        self.calls.append(("resumed", None))

    @hookimpl
    def s3pool_pool_drained(self) -> None:
        self.calls.append(("drained", None))

    @hookimpl
    def s3pool_pool_stopped(self) -> None:
        self.calls.append(("stopped", None))

    @hookimpl
    def s3pool_concurrency_changed(self, old, new, reason) -> None:
        self.calls.append(("concurrency", (old, new, reason)))


def test_task_lifecycle_hooks_in_order(make_pool) -> None:
    recorder = Recorder()
    pool = make_pool(plugins=[recorder], retries=2)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("blip")
        return "ok"

    assert pool.submit(flaky).result(5) == "ok"
    assert recorder.calls == [
        ("queued", "test_task_lifecycle_hooks_in_order.<locals>.flaky"),
        ("started", 1),
        ("retry", (1, "ConnectionError", True, True)),
        ("started", 2),
        ("completed", "ok"),
        ("metrics", ("succeeded", 2)),
    ]
    recorder.calls.clear()
    with pytest.raises(ValueError):
        pool.submit(lambda: int("x")).result(5)
    assert [c[0] for c in recorder.calls] == ["queued", "started", "error", "metrics"]
    assert recorder.calls[-1] == ("metrics", ("failed", 1))


def test_pool_event_hooks(make_pool) -> None:
    recorder = Recorder()
    pool = make_pool(plugins=[recorder], concurrency=2)
    pool.pause()
    pool.pause()  # no second event
    pool.resume()
    pool.set_concurrency(5)
    pool.set_concurrency(5)  # unchanged: no event
    pool.drain()
    pool.stop()
    pool.stop()
    assert recorder.calls == [
        ("paused", None),
        ("resumed", None),
        ("concurrency", (2, 5, "set_concurrency")),
        ("drained", None),
        ("stopped", None),
    ]


def test_priority_hook_overrides_default_but_not_explicit(make_pool) -> None:
    class Prioritiser:
        @hookimpl
        def s3pool_task_priority(self, task):
            return 42 if task.metadata.get("kind") == "hot" else None

    seen = []
    pool = make_pool(plugins=[Prioritiser()])
    pool.on("pool:taskQueued", lambda task: seen.append(task.priority))
    pool.options(metadata={"kind": "hot"}).submit(lambda: 1).result(5)
    pool.options(metadata={"kind": "cold"}).submit(lambda: 1).result(5)
    pool.options(metadata={"kind": "hot"}, priority=1).submit(lambda: 1).result(5)
    assert seen == [42, 0, 1]


def test_classification_hook(make_pool) -> None:
    class Classifier:
        @hookimpl
        def s3pool_classify_error(self, error):
            if isinstance(error, ValueError):
                return ErrorClassification(True, throttling=True, retry_after=0)
            return None

    pool = make_pool(plugins=[Classifier()], retries=2)
    calls = []

    def throttled() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("please slow down")
        return "ok"

    assert pool.submit(throttled).result(5) == "ok"
    stats = pool.stats()
    assert stats.throttled == 2 and stats.retries == 2


def test_wrap_attempt_runs_in_the_attempt_context(make_pool) -> None:
    exits: list[tuple[str | None, str | None]] = []

    class Spans:
        @hookimpl
        def s3pool_wrap_attempt(self, task):
            @contextmanager
            def span() -> Iterator[None]:
                token = current_span.set(f"span-{task.id}-{task.attempt}")
                error = None
                try:
                    yield
                except BaseException as caught:
                    error = type(caught).__name__
                    raise
                finally:
                    exits.append((current_span.get(), error))
                    current_span.reset(token)

            return span()

    pool = make_pool(plugins=[Spans()], retries=1)
    seen = pool.submit(current_span.get).result(5)
    assert seen is not None and seen.startswith("span-")
    assert current_span.get() is None
    with pytest.raises(KeyError):
        pool.submit(lambda: {}["k"]).result(5)
    assert exits[-1][1] == "KeyError"

    async def read_span() -> str | None:
        return current_span.get()

    assert asyncio.run(pool.run(read_span)).startswith("span-")
    with pool.admit():
        assert current_span.get().startswith("span-")
    assert current_span.get() is None


class Broken:
    """Raises in every hook."""

    def __init__(self) -> None:
        for name in [
            "s3pool_task_queued",
            "s3pool_task_started",
            "s3pool_task_completed",
            "s3pool_task_error",
            "s3pool_task_retry",
            "s3pool_task_metrics",
            "s3pool_pool_paused",
            "s3pool_pool_resumed",
            "s3pool_pool_drained",
            "s3pool_pool_stopped",
            "s3pool_concurrency_changed",
            "s3pool_task_priority",
            "s3pool_classify_error",
        ]:

            def boom(*args, _name=name, **kwargs):
                raise RuntimeError(f"plugin bug in {_name}")

            boom.s3pool_impl = {}  # type: ignore[attr-defined]
            setattr(self, name, hookimpl(boom))

    @hookimpl
    def s3pool_wrap_attempt(self, task):
        class BadCM:
            def __enter__(self):
                raise RuntimeError("enter")

            def __exit__(self, *exc):
                raise RuntimeError("exit")

        return BadCM()


class ExitBroken:
    @hookimpl
    def s3pool_wrap_attempt(self, task):
        class BadExit:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                raise RuntimeError("exit")

        return BadExit()


def test_a_broken_plugin_never_breaks_the_pool(make_pool, caplog) -> None:
    recorder = Recorder()
    pool = make_pool(plugins=[Broken(), ExitBroken(), recorder], retries=1, concurrency=2)
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("x")
        return "ok"

    assert pool.submit(flaky).result(5) == "ok"
    with pytest.raises(ValueError):
        pool.submit(lambda: int("x")).result(5)

    async def coro() -> int:
        return 1

    assert asyncio.run(pool.run(coro)) == 1
    with pool.admit():
        pass
    pool.pause()
    pool.resume()
    pool.set_concurrency(3)
    pool.drain(timeout=5)
    stats = pool.stats()
    assert stats.active == 0 and stats.pending == 0
    assert stats.hook_errors > 20
    assert "plugin bug" in caplog.text
    # the healthy plugin still saw everything
    assert ("completed", "ok") in recorder.calls
    assert ("retry", (1, "ConnectionError", True, True)) in recorder.calls


def test_on_uses_the_seed_event_names(make_pool) -> None:
    pool = make_pool(retries=1)
    events: list[tuple[str, tuple[object, ...]]] = []
    for name in EVENT_SIGNATURES:
        pool.on(name, lambda *args, _n=name: events.append((_n, args)))
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError()
        return "ok"

    pool.submit(flaky).result(5)
    names = [n for n, _ in events]
    assert names == [
        "pool:taskQueued",
        "pool:taskStarted",
        "pool:taskRetry",
        "pool:taskStarted",
        "pool:taskCompleted",
        "pool:taskMetrics",
    ]
    retry_args = events[2][1]
    assert retry_args[1] == 1  # (task, attempt)
    assert events[4][1][1] == "ok"
    assert events[5][1][0]["attempts"] == 2
    events.clear()
    pool.pause()
    pool.resume()
    pool.set_concurrency(3)
    pool.drain()
    pool.stop()
    assert [n for n, _ in events] == [
        "pool:paused",
        "pool:resumed",
        "pool:concurrencyChanged",
        "pool:drained",
        "pool:stopped",
    ]
    assert events[2][1] == (10, 3, "set_concurrency")


def test_on_validates_and_unsubscribes(make_pool) -> None:
    pool = make_pool()
    with pytest.raises(ConfigurationError, match="pool:taskStarted"):
        pool.on("taskStarted", print)
    with pytest.raises(ConfigurationError, match="callable"):
        pool.on("pool:taskStarted", "print")
    seen = []
    unsubscribe = pool.on("pool:taskCompleted", lambda task, result: seen.append(result))
    pool.submit(lambda: 1).result(5)
    unsubscribe()
    pool.submit(lambda: 2).result(5)
    assert seen == [1]
    callback = seen.append
    pool.on("pool:taskMetrics", callback)
    assert pool.off("pool:taskMetrics", callback)
    assert not pool.off("pool:taskMetrics", callback)


def test_a_raising_callback_is_logged_and_counted(make_pool, caplog) -> None:
    pool = make_pool()
    later = []
    pool.on("pool:taskStarted", lambda task: 1 / 0)
    pool.on("pool:taskStarted", lambda task: later.append(task.id))
    assert pool.submit(lambda: "fine").result(5) == "fine"
    assert len(later) == 1
    assert pool.stats().hook_errors == 1
    assert "ZeroDivisionError" in caplog.text


def test_callbacks_of_one_pool_do_not_see_another(make_pool) -> None:
    a, b = make_pool(), make_pool()
    seen = []
    a.on("pool:taskCompleted", lambda task, result: seen.append(result))
    b.submit(lambda: "b").result(5)
    a.submit(lambda: "a").result(5)
    assert seen == ["a"]


@pytest.fixture
def fake_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real distribution on sys.path that declares an ``s3pool`` entry point."""
    module = "s3pool_test_ep_plugin"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from s3pool_plugins import hookimpl

            seen = []

            @hookimpl
            def s3pool_task_completed(task, result):
                seen.append(result)
            """
        )
    )
    dist = tmp_path / "s3pool_test_ep_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: s3pool-test-ep-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[s3pool]\ntest_ep = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(hook_manager, "_entrypoint_plugins", None)
    yield module
    sys.modules.pop(module, None)
    hook_manager._entrypoint_plugins = None


def test_entry_point_plugins_are_loaded(fake_entry_point: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("S3POOL_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pool = OperationsPool()
    try:
        assert pool.plugin_manager.get_plugin("test_ep") is not None
        pool.submit(lambda: "via entry point").result(5)
        assert sys.modules[fake_entry_point].seen == ["via entry point"]
    finally:
        pool.shutdown()
    no_autoload = OperationsPool(load_entrypoints=False)
    assert no_autoload.plugin_manager.get_plugin("test_ep") is None
    no_autoload.shutdown()


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_environment_variable_turns_autoload_off(
    fake_entry_point: str, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("S3POOL_DISABLE_PLUGIN_AUTOLOAD", value)
    pool = OperationsPool()
    assert pool.plugin_manager.get_plugin("test_ep") is None
    pool.shutdown()


def test_hooks_run_on_the_thread_that_runs_the_task(make_pool) -> None:
    threads = []

    class Where:
        @hookimpl
        def s3pool_task_started(self):
            threads.append(threading.current_thread().name)

    pool = make_pool(plugins=[Where()], name="whereami")
    pool.submit(lambda: None).result(5)
    assert threads and threads[0].startswith("whereami-worker-")


def test_an_entry_point_plugin_can_decline_to_be_registered(monkeypatch) -> None:
    from s3pool_plugins import OperationsPool
    from s3pool_plugins.hooks import manager as manager_module

    class Declines:
        def s3pool_wanted(self) -> bool:
            return False

        @hookimpl
        def s3pool_task_queued(self, pool, task) -> None:
            raise AssertionError("never called")

    class Accepts(Declines):
        calls = 0

        def s3pool_wanted(self) -> bool:
            return True

        @hookimpl
        def s3pool_task_queued(self, pool, task) -> None:
            Accepts.calls += 1

    class Breaks(Declines):
        def s3pool_wanted(self) -> bool:
            raise RuntimeError("broken check")

    plugins = [("declines", Declines()), ("accepts", Accepts()), ("breaks", Breaks())]
    monkeypatch.setattr(manager_module, "entrypoint_plugins", lambda: list(plugins))
    monkeypatch.delenv("S3POOL_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pool = OperationsPool()
    try:
        pool.submit(lambda: None).result(timeout=5)
        assert Accepts.calls == 1
        assert pool.plugin_manager.get_plugin("declines") is None and pool.plugin_manager.get_plugin("breaks") is None
        assert pool.stats().hook_errors == 1  # the broken check is logged and counted
    finally:
        pool.shutdown()
