"""Backend calls with a time box of the agent's own, whatever the backend does.

A backend promises to time-box its calls, but the pool must not depend on a
third party keeping that promise: :class:`TimeBox` runs each call on a helper
thread and gives up waiting after ``timeout`` seconds. A helper stuck in a
call is abandoned (it is a daemon thread, and ends whenever the backend
returns) and the next call gets a new one. Every failure, a timeout
included, comes out as :class:`~s3pool_plugins.FleetUnavailable`.
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
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


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
        if not job.done.wait(clamp_wait(self.timeout)):
            self._calls = None  # the helper is stuck in the backend: abandon it (it exits after that call)
            calls.put(_STOP)
            self.abandoned += 1
            raise FleetUnavailable(f"the fleet store did not answer within {self.timeout:g} s")
        if job.error is not None:
            if isinstance(job.error, FleetUnavailable):
                raise job.error
            raise FleetUnavailable(f"the fleet backend failed: {type(job.error).__name__}") from job.error
        return job.result  # type: ignore[no-any-return]

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
        try:
            job.result = job.fn()
        except BaseException as error:  # handed to the caller; the helper goes on
            job.error = error
        finally:
            job.done.set()
