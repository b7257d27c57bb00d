"""Cooperative cancellation for work that runs in threads.

Python cannot kill a thread, so when an attempt of thread work times out the
pool sets that attempt's :class:`CancellationToken` and keeps counting the
work as active until it really returns. Long-running work polls
:func:`current_token` (the seed's abort signal, without changing any function
signature).
"""

from __future__ import annotations

import threading
from contextvars import ContextVar

from ..errors import AttemptCancelled

_event_lock = threading.Lock()


class CancellationToken:
    """Set once, when the attempt it belongs to should stop. Thread-safe."""

    __slots__ = ("_cancelled", "_event", "reason")

    def __init__(self) -> None:
        self._cancelled = False
        self._event: threading.Event | None = None
        self.reason: str | None = None

    @property
    def cancelled(self) -> bool:
        """True once cancellation was requested."""
        return self._cancelled

    def cancel(self, reason: str = "cancelled") -> None:
        """Request cancellation (idempotent; the first reason is kept)."""
        with _event_lock:
            if self._cancelled:
                return
            self.reason = reason
            self._cancelled = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds; True if cancelled meanwhile.

        Use it instead of ``time.sleep`` in work that should stop promptly.
        """
        with _event_lock:
            if self._cancelled:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        """Raise :class:`AttemptCancelled` if cancellation was requested."""
        if self._cancelled:
            raise AttemptCancelled(self.reason or "cancelled")


class _NeverCancelled(CancellationToken):
    """The token seen outside any attempt with a timeout: it is never set."""

    __slots__ = ()

    def cancel(self, reason: str = "cancelled") -> None:
        """Ignored: there is no attempt to cancel here."""


NEVER_CANCELLED: CancellationToken = _NeverCancelled()
current_token_var: ContextVar[CancellationToken] = ContextVar("s3pool_cancellation_token", default=NEVER_CANCELLED)


def current_token() -> CancellationToken:
    """The token of the pool attempt running in this context.

    Outside an attempt, or in an attempt without a timeout, it is a token
    that is never cancelled, so work can poll it unconditionally.
    """
    return current_token_var.get()
