"""The fleet backend contract: the one place a fleet of pools keeps what it shares.

S3 limits a partitioned prefix for all of its clients together, so pools in
many processes (or hosts) that write to one prefix must share one budget. A
:class:`FleetBackend` is that shared store; it is handed out per *partition*
(the pool itself, a bucket or a prefix, as ``auto_tuning.scope`` says) as a
:class:`FleetPartition` with four shared things:

- the **pacing rate**: a fleet-wide token bucket (:meth:`FleetPartition.take_tokens`);
- **concurrency slots**: a fleet-wide limit, held by members as leases that
  expire unless renewed, so the slots of a killed process come back
  (:meth:`FleetPartition.lease_slots`, :meth:`~FleetPartition.renew_slots`,
  :meth:`~FleetPartition.release_slots`);
- the **learned state** of the adaptive limit, a versioned record that members
  replace by compare-and-set, so a fleet converges instead of N controllers
  cutting in turn (:meth:`FleetPartition.shared_limit`,
  :meth:`~FleetPartition.propose_limit`);
- the **retry budget**, fleet-wide (:meth:`FleetPartition.take_retry`,
  :meth:`~FleetPartition.give_retry`).

Rules every backend keeps (the contract tests in
``s3pool_plugins.testing.fleet_contract`` check them):

- Every method is thread-safe and *time-boxed*: it returns, or raises
  :class:`~s3pool_plugins.FleetUnavailable`, within the backend's own call
  timeout. It never blocks without bound and raises nothing else for a store
  that is slow, gone or restarted empty (an empty store is a fresh start, not
  an error).
- Times are the backend's own clock, in seconds; a member never compares them
  with its local clock.
- Credentials never appear in ``description``, ``repr`` or any error message.

The pool never calls a backend under one of its own locks or on an
attempt's hot path: a fleet agent thread leases tokens and slots in small
batches ahead of need, and the pool falls back to local control whenever the
backend raises :class:`~s3pool_plugins.FleetUnavailable`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class TokenGrant:
    """The answer of :meth:`FleetPartition.take_tokens`."""

    granted: int
    """Tokens taken now (0 to the number asked for)."""
    retry_after: float
    """Seconds until the next token is due when fewer were granted than asked (0.0 otherwise)."""


@dataclass(frozen=True)
class SharedLimit:
    """The learned state of one partition's adaptive limit, as a fleet shares it."""

    rate: float | None
    """The fleet's pacing rate in attempts per second (for the whole fleet), or None: unpaced."""
    limit: int
    """The concurrency limit the adaptive algorithm is at (per member)."""
    ceiling: float | None
    """The highest rate (attempts per second, whole fleet) the service accepted without throttling, if known."""
    version: int = 0
    """Raised by one on every accepted change; 0 means "nothing stored yet"."""
    updated_at: float = 0.0
    """When the backend stored it, on the backend's clock (seconds)."""


class FleetPartition(ABC):
    """What a fleet shares for one partition (``key``). See the module's rules."""

    key: str
    """The partition: ``""`` for the pool itself, else the bucket or prefix."""

    @abstractmethod
    def take_tokens(self, count: int, rate: float, burst: float) -> TokenGrant:
        """Take up to ``count`` (>= 1) tokens from the fleet-wide bucket that refills at ``rate``
        tokens per second (> 0) up to ``burst`` (>= 1) tokens.

        Over any span of T seconds the whole fleet is granted at most
        ``burst + rate * T`` tokens (with the rate and burst of the calls
        made). A bucket never used before starts full.
        """

    @abstractmethod
    def lease_slots(self, member: str, count: int, limit: int, ttl: float) -> int:
        """Ask for ``count`` (>= 0) more slots for ``member`` out of a fleet-wide ``limit`` (>= 1), and
        renew what ``member`` holds for ``ttl`` seconds (> 0). Returns how many ``member`` holds now.

        The sum held by all members whose lease has not expired never exceeds
        ``limit``. A member whose lease expired holds nothing (its slots went
        back), and its next call starts from zero.
        """

    @abstractmethod
    def renew_slots(self, member: str, ttl: float) -> int:
        """Extend ``member``'s lease by ``ttl`` seconds; return how many slots it holds (0 if it expired)."""

    @abstractmethod
    def release_slots(self, member: str, count: int) -> int:
        """Give back up to ``count`` of ``member``'s slots; return how many it still holds."""

    @abstractmethod
    def shared_limit(self) -> SharedLimit | None:
        """The stored learned state, or None if none is stored (a new fleet, or a store restarted empty)."""

    @abstractmethod
    def propose_limit(self, proposal: SharedLimit) -> SharedLimit:
        """Store ``proposal`` if ``proposal.version`` is the version stored now, or if nothing is stored.

        Compare-and-set: the stored record then gets version + 1 (1 when
        nothing was stored) and the backend's time. A store with nothing
        stored (new, or restarted empty) takes any proposal, whatever version
        it was based on, so the fleet rebuilds its state from what a member
        last knew. Returns the record stored after the call, accepted or not,
        so a member whose proposal lost adopts the winner's.
        """

    @abstractmethod
    def take_retry(self, cost: int, capacity: int) -> bool:
        """Take ``cost`` tokens from the fleet's retry budget (which holds at most ``capacity`` and starts
        full); False, taking nothing, if it holds fewer."""

    @abstractmethod
    def give_retry(self, amount: int, capacity: int) -> None:
        """Put ``amount`` tokens back into the fleet's retry budget, never above ``capacity``."""


class FleetBackend(ABC):
    """A shared store for a fleet of pools, named ``fleet_name`` (every key is namespaced by it)."""

    fleet_name: str
    """The fleet's name: pools with the same backend and name share their budgets."""

    @property
    @abstractmethod
    def description(self) -> str:
        """The store for logs and summaries (for example ``redis://host:6379/0``), with no credentials."""

    @abstractmethod
    def partition(self, key: str) -> FleetPartition:
        """The shared state of partition ``key``. Cheap, and never touches the store."""

    @abstractmethod
    def close(self) -> None:
        """Let go of connections and threads. Idempotent; the backend is not used afterwards."""

    def after_fork(self) -> None:
        """The process forked and this is the child's copy of the backend: drop what the parent shares.

        Called in the child, once, before its pools use the backend again
        (from ``os.register_at_fork``'s ``after_in_child``, while the child
        has a single thread). Connections inherited from the parent are the
        parent's sockets: forget them without closing or writing to them (the
        parent still uses them) and open new ones on next use; locks a parent
        thread held at fork are held forever in the child: make new ones.
        Quick, never blocking, never touching the store; it must not raise.
        The default does nothing (a backend with no connection and no lock).
        """
        return None  # an optional hook, not abstract: most backends have nothing to drop
