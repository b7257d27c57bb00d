"""The in-process fleet backend: one budget shared by the pools of one process.

:class:`LocalFleet` keeps the contract of :mod:`.backend` in memory. Pools
given the same instance share their pace, slots, learned limit and retry
budget, as pools in many processes do through a shared store. It is also the
reference implementation the contract tests run against.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from .backend import FleetBackend, FleetPartition, SharedLimit, TokenGrant


class _LocalPartition(FleetPartition):
    """One partition's shared state, guarded by one lock (every method is a short critical section)."""

    def __init__(self, key: str, clock: Callable[[], float]) -> None:
        self.key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: float | None = None
        self._refilled_at = 0.0
        self._leases: dict[str, tuple[int, float]] = {}
        self._limit: SharedLimit | None = None
        self._retry: int | None = None

    def take_tokens(self, count: int, rate: float, burst: float) -> TokenGrant:
        with self._lock:
            now = self._clock()
            if self._tokens is None:
                tokens = burst
            else:
                tokens = min(burst, self._tokens + max(0.0, now - self._refilled_at) * rate)
            granted = min(count, math.floor(tokens))
            tokens -= granted
            self._tokens = tokens
            self._refilled_at = now
        retry_after = 0.0 if granted >= count else (1.0 - tokens) / rate
        return TokenGrant(granted=granted, retry_after=max(0.0, retry_after))

    def lease_slots(self, member: str, count: int, limit: int, ttl: float) -> int:
        with self._lock:
            now = self._clock()
            self._expire(now)
            held = self._leases.get(member, (0, 0.0))[0]
            others = sum(n for name, (n, _) in self._leases.items() if name != member)
            free = max(0, limit - others - held)
            held = max(0, min(held + min(count, free), limit - others))
            self._store(member, held, now + ttl)
            return held

    def renew_slots(self, member: str, ttl: float) -> int:
        with self._lock:
            now = self._clock()
            self._expire(now)
            held = self._leases.get(member, (0, 0.0))[0]
            self._store(member, held, now + ttl)
            return held

    def release_slots(self, member: str, count: int) -> int:
        with self._lock:
            now = self._clock()
            self._expire(now)
            held, expires = self._leases.get(member, (0, 0.0))
            held = max(0, held - count)
            self._store(member, held, expires)
            return held

    def shared_limit(self) -> SharedLimit | None:
        with self._lock:
            return self._limit

    def propose_limit(self, proposal: SharedLimit) -> SharedLimit:
        with self._lock:
            stored = self._limit
            if stored is None or proposal.version == stored.version:
                version = 0 if stored is None else stored.version
                stored = replace(proposal, version=version + 1, updated_at=self._clock())
                self._limit = stored
            return stored

    def take_retry(self, cost: int, capacity: int) -> bool:
        with self._lock:
            tokens = capacity if self._retry is None else min(self._retry, capacity)
            if tokens < cost:
                self._retry = tokens
                return False
            self._retry = tokens - cost
            return True

    def give_retry(self, amount: int, capacity: int) -> None:
        with self._lock:
            tokens = capacity if self._retry is None else self._retry
            self._retry = min(capacity, tokens + max(0, amount))

    def after_fork(self) -> None:
        """In a forked child: a new lock, and no leases (every member that held one is the parent's: this
        copy is no longer shared with it)."""
        self._lock = threading.Lock()
        self._leases.clear()

    def _expire(self, now: float) -> None:
        expired = [name for name, (_, expires) in self._leases.items() if expires <= now]
        for name in expired:
            del self._leases[name]

    def _store(self, member: str, held: int, expires: float) -> None:
        if held > 0:
            self._leases[member] = (held, expires)
        else:
            self._leases.pop(member, None)


class LocalFleet(FleetBackend):
    """A fleet backend in this process's memory: pools given the same instance share one budget.

    Thread-safe; ``clock`` returns monotonic seconds (injectable for tests).
    The pool never closes a backend it was handed, so one instance can serve
    any number of pools, one after another or at once.
    """

    def __init__(self, fleet_name: str = "s3pool", *, clock: Callable[[], float] = time.monotonic) -> None:
        self.fleet_name = fleet_name
        self._clock = clock
        self._lock = threading.Lock()
        self._partitions: dict[str, _LocalPartition] = {}

    @property
    def description(self) -> str:
        return f"local:{self.fleet_name}"

    def partition(self, key: str) -> FleetPartition:
        with self._lock:
            found = self._partitions.get(key)
            if found is None:
                found = self._partitions[key] = _LocalPartition(key, self._clock)
            return found

    def close(self) -> None:
        """Nothing to let go of: the state stays in memory for the pools that still share it."""

    def after_fork(self) -> None:
        """In a forked child, this is the child's own copy: new locks, and the leases of the parent's
        members dropped (they would hold slots here until they expired). The pace, learned state and retry
        budget stay as the parent left them."""
        self._lock = threading.Lock()
        for partition in self._partitions.values():
            partition.after_fork()

    def __repr__(self) -> str:
        return f"LocalFleet({self.fleet_name!r})"
