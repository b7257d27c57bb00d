"""Helpers for the fleet tests: S3 clients through a pool, and a backend whose store can be made to fail."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from s3pool_plugins import FleetBackend, FleetPartition, FleetUnavailable, LocalFleet, OperationsPool, SharedLimit
from s3pool_plugins.adapters.botocore import install
from s3pool_plugins.core.fleet.backend import TokenGrant
from s3pool_plugins.testing import ChaosProxy, LocalS3

T = TypeVar("T")


def s3_client(local_s3: LocalS3, proxy: ChaosProxy, pool: OperationsPool) -> Any:
    """A boto3 S3 client of its own session, through ``proxy``, under ``pool``."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=local_s3.access_key, aws_secret_access_key=local_s3.secret_key, region_name=local_s3.region
    )
    install(session, pool)
    config = Config(max_pool_connections=64, s3={"addressing_style": "path"})
    return session.client("s3", endpoint_url=proxy.endpoint_url, config=config)


class Store:
    """What a :class:`FlakyFleet`'s store does now: answer (``up``), fail (``down``), raise an error of its
    own (``odd``), hang (``slow``) or raise SystemExit (``exit``)."""

    def __init__(self) -> None:
        self.mode = "up"
        self.hang = 30.0
        self.calls = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.calls += 1
        mode = self.mode
        if mode == "down":
            raise FleetUnavailable("the store is down (test)")
        if mode == "odd":
            raise RuntimeError("a third-party backend's own error (test)")
        if mode == "slow":
            time.sleep(self.hang)
        if mode == "exit":
            raise SystemExit(3)


class _FlakyPartition(FleetPartition):
    def __init__(self, inner: FleetPartition, store: Store) -> None:
        self.key = inner.key
        self._inner = inner
        self._store = store

    def _do(self, fn: Callable[[], Any]) -> Any:
        self._store.enter()
        return fn()

    def take_tokens(self, count: int, rate: float, burst: float) -> TokenGrant:
        return self._do(lambda: self._inner.take_tokens(count, rate, burst))  # type: ignore[no-any-return]

    def lease_slots(self, member: str, count: int, limit: int, ttl: float) -> int:
        return self._do(lambda: self._inner.lease_slots(member, count, limit, ttl))  # type: ignore[no-any-return]

    def renew_slots(self, member: str, ttl: float) -> int:
        return self._do(lambda: self._inner.renew_slots(member, ttl))  # type: ignore[no-any-return]

    def release_slots(self, member: str, count: int) -> int:
        return self._do(lambda: self._inner.release_slots(member, count))  # type: ignore[no-any-return]

    def shared_limit(self) -> SharedLimit | None:
        return self._do(self._inner.shared_limit)  # type: ignore[no-any-return]

    def propose_limit(self, proposal: SharedLimit) -> SharedLimit:
        return self._do(lambda: self._inner.propose_limit(proposal))  # type: ignore[no-any-return]

    def take_retry(self, cost: int, capacity: int) -> bool:
        return self._do(lambda: self._inner.take_retry(cost, capacity))  # type: ignore[no-any-return]

    def give_retry(self, amount: int, capacity: int) -> None:
        self._do(lambda: self._inner.give_retry(amount, capacity))


class FlakyFleet(FleetBackend):
    """A :class:`LocalFleet` behind a :class:`Store` switch (a backend that keeps no time box of its own)."""

    def __init__(self, inner: LocalFleet, store: Store) -> None:
        self.fleet_name = inner.fleet_name
        self._inner = inner
        self.store = store
        self.closed = 0

    @property
    def description(self) -> str:
        return "flaky://test-store/0"

    def partition(self, key: str) -> FleetPartition:
        return _FlakyPartition(self._inner.partition(key), self.store)

    def close(self) -> None:
        self.closed += 1


def fallbacks(pools: list[OperationsPool]) -> int:
    """Fallbacks to local control so far, summed over ``pools`` (each has a fleet)."""
    return sum(pool.stats().fleet.fallbacks for pool in pools)  # type: ignore[union-attr]


def while_joined(pools: list[OperationsPool], proxy: ChaosProxy, run: Callable[[], T], tries: int = 3) -> T:
    """``run()``'s result, from a try in which no member of ``pools`` fell back (the proxy's counts are its own).

    A fleet-wide bound holds while every member is joined; under local control a member may run its fair
    share beside what the others hold, so that nothing hangs (documented). On a loaded machine a healthy
    store call can outlive its time box, and the member falls back although the store never failed: such a
    try says nothing about the fleet's bound, so it is run again, up to ``tries`` times.
    """
    for _ in range(tries):
        before = fallbacks(pools)
        proxy.reset_counts()
        result = run()
        if fallbacks(pools) == before:
            return result
    raise AssertionError(f"a member fell back to local control in each of {tries} tries; the store never failed")
