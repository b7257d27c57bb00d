"""Context that follows work across tasks and threads: priority and tenant scopes, held slots.

Both live in :mod:`contextvars`, so they reach everything that inherits the
context: asyncio tasks created inside, ``contextvars.copy_context().run`` in
threads, and the pool's own tasks (which run in a copy of the submitter's
context).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from ..errors import ConfigurationError
from .validation import in_range

_scope_priority: ContextVar[float | None] = ContextVar("s3pool_priority_scope", default=None)
_scope_tenant: ContextVar[str | None] = ContextVar("s3pool_tenant_scope", default=None)
_held_slots: ContextVar[tuple[SlotHolder, ...]] = ContextVar("s3pool_held_slots", default=())
held_slots_var = _held_slots
"""The slots the current context runs under, innermost last (empty outside any pool work)."""


MAX_PRIORITY = 1e15
"""Priorities lie in ``[-MAX_PRIORITY, MAX_PRIORITY]``, so aged priorities stay finite floats."""


def validate_priority(value: object, option: str = "priority") -> float:
    """``value`` as a priority (a number from ``-MAX_PRIORITY`` to ``MAX_PRIORITY``), or raise naming ``option``."""
    if not in_range(value, -MAX_PRIORITY, MAX_PRIORITY):
        accepted = f"a finite int or float from {-MAX_PRIORITY:g} to {MAX_PRIORITY:g} (higher runs first)"
        raise ConfigurationError(option, accepted, value)
    return value  # type: ignore[return-value]


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


_expected: ContextVar[tuple[Callable[[BaseException], bool], ...]] = ContextVar("s3pool_expected_errors", default=())


@contextmanager
def expected_errors(is_expected: Callable[[BaseException], bool]) -> Iterator[None]:
    """Calls that fail inside with an error ``is_expected(error)`` accepts are expected answers, not failures.

    For errors the caller handles as an answer: ``exists()`` probing a key
    that is not there gets a 404 by design. Such a call (a task of
    ``begin_call``, as the adapters' requests and operations are) still
    fails for its caller, but counts in ``stats().expected`` instead of
    ``errors``, in ``metrics()`` not as a failure, and its span carries no
    error status. Scopes nest; any enclosing predicate may accept.
    """
    token = _expected.set((*_expected.get(), is_expected))
    try:
        yield
    finally:
        _expected.reset(token)


def is_expected_error(error: BaseException) -> bool:
    """True if an :func:`expected_errors` scope of the current context accepts ``error``."""
    return any(predicate(error) for predicate in _expected.get())


def scope_priority() -> float | None:
    """The priority set by the innermost :func:`priority_scope`, if any."""
    return _scope_priority.get()


def validate_tenant(value: object, option: str = "tenant") -> str:
    """Return ``value`` as a tenant name or raise naming ``option``."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(option, "a non-empty str naming the tenant", value)
    return value


@contextmanager
def tenant(name: str) -> Iterator[None]:
    """Count all work started inside as work of tenant ``name``.

    Tenants share a pool by weighted fair queuing (the pool option
    ``tenants`` sets the weights; others weigh 1.0). Like
    :func:`priority_scope` it reaches asyncio tasks created inside and pool
    tasks submitted from the block, and it wins over a tenant given to
    ``install``; an explicit per-task ``tenant`` option wins over it. Scopes
    nest; the innermost applies.
    """
    token = _scope_tenant.set(validate_tenant(name))
    try:
        yield
    finally:
        _scope_tenant.reset(token)


def current_tenant() -> str | None:
    """The tenant set by the innermost :func:`tenant` scope, if any."""
    return _scope_tenant.get()


class SlotHolder:
    """One granted slot, shared by the unit it was granted to and all work nested under it.

    ``refs`` counts the holders: the admitted attempt itself plus every
    nested unit still running under it. It is changed only under the
    scheduler's lock; the slot goes back to the scheduler when it drops to 0,
    so work nested under a slot never runs after that slot was given back.
    ``leases`` counts the open leases among them (see ``Call.keep_slot``).
    """

    __slots__ = ("leases", "pool", "refs")

    def __init__(self, pool: object) -> None:
        self.pool = pool
        self.refs = 1
        self.leases = 0


def held_slot(pool: object) -> SlotHolder | None:
    """The slot of ``pool`` that the current context runs under, if any.

    A holder whose slot already went back (``refs == 0``: work that ended
    without undoing its mark, such as a call interrupted by a
    ``BaseException`` between two botocore events) no longer counts.
    """
    for holder in _held_slots.get():
        if holder.pool is pool and holder.refs > 0:
            return holder
    return None


def holds_slot(pool: object) -> bool:
    """True if the current context already runs under a slot of ``pool``."""
    return held_slot(pool) is not None


def enter_slot(holder: SlotHolder) -> Token[tuple[SlotHolder, ...]]:
    """Mark the current context as running under ``holder``; returns a reset token."""
    return _held_slots.set((*_held_slots.get(), holder))


def exit_slot(token: Token[tuple[SlotHolder, ...]]) -> None:
    """Undo :func:`enter_slot`."""
    _held_slots.reset(token)
