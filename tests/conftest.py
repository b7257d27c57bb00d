"""Shared fixtures: pools that are always shut down, and a gate to hold a slot."""

from __future__ import annotations

import gc
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from s3pool_plugins import OperationsPool

pytest_plugins = ["s3pool_plugins.testing.pytest_plugin"]


@pytest.fixture
def make_pool() -> Iterator[Callable[..., OperationsPool]]:
    """Build pools (plugin autoload off, no jitter surprises) and stop them after the test."""
    pools: list[OperationsPool] = []

    def factory(**options: Any) -> OperationsPool:
        options.setdefault("load_entrypoints", False)
        if "retry_policy" not in options:
            options.setdefault("retry_delay", 0.001)
        options.setdefault("seed", 7)
        pool = OperationsPool(**options)
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        pool.stop()
        pool.resume()
        pool.drain(timeout=10)
        pool.shutdown(wait=True)
        assert pool.stats().active == 0


class Gate:
    """A task body that blocks until opened, to hold a slot deterministically."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()

    def __call__(self) -> str:
        self.entered.set()
        assert self._open.wait(10), "gate never opened"
        return "gate"

    def open(self) -> None:
        self._open.set()


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.open()


@pytest.fixture
def ctrl_c() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt in the main thread during the test, as in an interactive Python.

    A process started by a non-interactive shell's ``cmd &`` inherits SIGINT ignored; tests of what
    Ctrl-C does must not depend on how the test run was started.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def young_heap() -> Iterator[None]:
    """The module's ``gc.collect()`` calls traverse only what its tests made, not the whole session's heap.

    Everything tracked when the module starts is moved to the permanent generation (``gc.freeze``, no
    collection first: that alone took seconds) and back at its end, where garbage among it is collected
    as usual. A full collection costs time in proportion to every tracked object: late in a full run (over
    a gigabyte of objects), on a loaded machine, one took seconds, and a property test collecting in each
    example outlived its timeout. What the tests check is unchanged: their own garbage is still collected.
    Use with ``pytestmark = pytest.mark.usefixtures("young_heap")`` in a module that calls ``gc.collect()``.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
