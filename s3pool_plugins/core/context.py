"""Context that follows work across tasks and threads: priority scope and held slots.

Both live in :mod:`contextvars`, so they reach everything that inherits the
context: asyncio tasks created inside, ``contextvars.copy_context().run`` in
threads, and the pool's own tasks (which run in a copy of the submitter's
context).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ..errors import ConfigurationError

_scope_priority: ContextVar[float | None] = ContextVar("s3pool_priority_scope", default=None)
_held_slots: ContextVar[tuple[object, ...]] = ContextVar("s3pool_held_slots", default=())


def validate_priority(value: object, option: str = "priority") -> float:
    """Return ``value`` as a priority or raise naming ``option``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(option, "a finite int or float (higher runs first)", value)
    return value


@contextmanager
def priority_scope(priority: float) -> Iterator[None]:
    """Make ``priority`` the default priority of all work started inside.

    Applies to every pool, to asyncio tasks created inside the block and to
    pool tasks submitted from it (they inherit the context). An explicit
    per-task priority still wins. Scopes nest; the innermost applies.
    """
    token = _scope_priority.set(validate_priority(priority))
    try:
        yield
    finally:
        _scope_priority.reset(token)


def scope_priority() -> float | None:
    """The priority set by the innermost :func:`priority_scope`, if any."""
    return _scope_priority.get()


def holds_slot(pool: object) -> bool:
    """True if the current context already runs under a slot of ``pool``."""
    return pool in _held_slots.get()


def enter_slot(pool: object) -> object:
    """Mark the current context as holding a slot of ``pool``; returns a reset token."""
    return _held_slots.set((*_held_slots.get(), pool))


def exit_slot(token: object) -> None:
    """Undo :func:`enter_slot`."""
    _held_slots.reset(token)  # type: ignore[arg-type]
