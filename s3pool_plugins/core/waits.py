"""Blocking waits of any length, in pieces the platform accepts.

``threading`` (``Lock.acquire``, ``Condition.wait``, ``Event.wait``) and
``queue`` raise ``OverflowError`` for a timeout above
``threading.TIMEOUT_MAX`` (about 292 years on Linux, 49 days on Windows), and
a service thread that raised it would stop for good. Every wait in the core
goes through :func:`clamp_wait` or :func:`wait_until`: a longer wait is taken
in pieces of at most :data:`MAX_WAIT` seconds, so a timeout keeps its exact
meaning, whatever its size.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MAX_WAIT: float = min(threading.TIMEOUT_MAX, 86400.0)
"""The longest single blocking wait the core makes, in seconds (one day, or less where the platform needs it)."""


def clamp_wait(delay: float) -> float:
    """``delay`` seconds as a timeout every blocking call accepts: within ``[0, MAX_WAIT]`` (NaN is 0).

    A caller that clamped must check its own deadline when the wait returns
    and wait again if it has not passed.
    """
    if not delay > 0:
        return 0.0
    return delay if delay < MAX_WAIT else MAX_WAIT


def wait_until(
    wait: Callable[[float], bool],
    timeout: float | None,
    *,
    interval: float = MAX_WAIT,
    between: Callable[[], None] | None = None,
) -> bool:
    """Call ``wait(piece)`` until it returns True (then True) or ``timeout`` seconds passed (then False).

    ``wait`` blocks for at most ``piece`` seconds (always within
    ``[0, MAX_WAIT]``) and returns True once what it waits for happened:
    ``Event.wait``, or ``lambda s: lock.acquire(timeout=s)``. ``timeout`` None
    waits without limit; a negative or NaN timeout waits 0 s. Pieces are at
    most ``interval`` seconds long, and ``between()`` is called after each
    piece that did not end the wait (a periodic check of the caller's).
    """
    if timeout is not None and not timeout > 0:
        timeout = 0.0
    deadline = None if timeout is None else time.monotonic() + timeout
    longest = clamp_wait(interval)
    while True:
        piece = longest if deadline is None else min(longest, clamp_wait(deadline - time.monotonic()))
        if wait(piece):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        if between is not None:
            between()
