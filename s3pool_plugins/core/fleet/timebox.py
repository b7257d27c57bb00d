"""Backend calls with a time box of the agent's own, whatever the backend does.

A backend promises to time-box its calls, but the pool must not depend on a
third party keeping that promise: :class:`TimeBox` runs each call on a helper
thread and gives up waiting after ``timeout`` seconds of the call in the
backend. A helper stuck in a call is abandoned (it is a daemon thread, and
ends whenever the backend returns) and the next call gets a new one. Every
failure, a timeout included, comes out as
:class:`~s3pool_plugins.FleetUnavailable`.

The time box counts from the moment the helper starts the call: on a loaded
machine the helper may wait for the CPU before it runs, and that wait is not
the store's slowness. A call whose helper has not started within ``timeout``
gets at most ``timeout`` more to start and answer (so no call waits more than
twice its time box), and a call that answered just as the wait ran out counts
as answered.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ...errors import FleetUnavailable
from ..waits import clamp_wait

T = TypeVar("T")

_STOP = object()


class _Call:
    __slots__ = ("done", "error", "fn", "result", "started")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = threading.Event()


class TimeBox:
    """Runs backend calls one at a time on a helper thread, waiting at most ``timeout`` seconds for each."""

    def __init__(self, name: str, timeout: float) -> None:
        self.timeout = timeout
        self._name = name
        self._calls: queue.SimpleQueue[Any] | None = None
        self.abandoned = 0
        """Helper threads given up on because a call outlived its time box."""

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()``'s result; :class:`FleetUnavailable` if it raised or did not return within the time box."""
        calls = self._calls
        if calls is None:
            calls = self._calls = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(calls,), name=f"{self._name}-calls", daemon=True).start()
        job = _Call(fn)
        calls.put(job)
        if not self._answered(job):
            self._calls = None  # the helper is stuck in the backend: abandon it (it exits after that call)
            calls.put(_STOP)
            self.abandoned += 1
            raise FleetUnavailable(f"the fleet store did not answer within {self.timeout:g} s")
        if job.error is not None:
            if isinstance(job.error, FleetUnavailable):
                raise job.error
            raise FleetUnavailable(f"the fleet backend failed: {type(job.error).__name__}") from job.error
        return job.result  # type: ignore[no-any-return]

    def _answered(self, job: _Call) -> bool:
        """Wait for ``job``: ``timeout`` seconds, and once more as long if its helper had not started it."""
        if job.done.wait(clamp_wait(self.timeout)):
            return True
        if not job.started.is_set():  # the helper waited for the CPU, not for the store
            return job.done.wait(clamp_wait(self.timeout))
        return job.done.is_set()

    def close(self) -> None:
        """Let the helper thread end (idempotent)."""
        calls, self._calls = self._calls, None
        if calls is not None:
            calls.put(_STOP)


def _serve(calls: queue.SimpleQueue[Any]) -> None:
    while True:
        job = calls.get()
        if job is _STOP:
            return
        job.started.set()
        try:
            job.result = job.fn()
        except BaseException as error:  # handed to the caller; the helper goes on
            job.error = error
        finally:
            job.done.set()
