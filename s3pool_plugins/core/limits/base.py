"""The limit algorithm contract, kept apart from the scheduler that enforces it.

A :class:`Limit` only decides: it is handed a :class:`LimitSignal` (what
happened since its last evaluation) and answers with a
:class:`LimitDecision` or None (no change). The pool's controller gathers
the signals, calls it, applies the decision to the scheduler, keeps the
history and announces each change. An algorithm is called from one thread at
a time and needs no locking of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..validation import positive_int
from .signals import LimitDecision, LimitSignal


class Limit(ABC):
    """A concurrency limit algorithm (the ``Limit`` of Netflix's concurrency-limits)."""

    @property
    @abstractmethod
    def limit(self) -> int:
        """The limit now (an int >= 1)."""

    @property
    def rate(self) -> float | None:
        """The pacing rate now, in attempts per second, or None (unpaced)."""
        return None

    @abstractmethod
    def update(self, signal: LimitSignal) -> LimitDecision | None:
        """Decide from ``signal``; return the new state, or None to keep the current one."""


class FixedLimit(Limit):
    """A limit that never changes by itself."""

    def __init__(self, limit: int) -> None:
        self._limit = positive_int("limit", limit)

    @property
    def limit(self) -> int:
        return self._limit

    def update(self, signal: LimitSignal) -> LimitDecision | None:
        return None

    def __repr__(self) -> str:
        return f"FixedLimit({self._limit})"
