"""A fleet's shared rate against a real S3 (moto) behind a ChaosProxy limit: its cold start and its rebuild.

Pools share a LocalFleet in this process; a watcher reads the stored record
every few milliseconds. Assertions are on the record's values and on counts,
never on wall-clock speed.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from s3pool_plugins import LocalFleet, SharedLimit
from s3pool_plugins.core.fleet.rate import FAST_RISE, MAX_CUT, MAX_START_CUT, PROBE, SLOW_START
from s3pool_plugins.testing import ChaosProxy, LocalS3

from .conftest import FlakyFleet, Store, s3_client

R = 60.0
AUTO = {"adjustment_interval": 0.25}


class _Watch:
    """Every record the fleet stored, as read every 5 ms (a record replaced between two reads is missed)."""

    def __init__(self, fleet: LocalFleet) -> None:
        self.records: list[SharedLimit] = []
        self._part = fleet.partition("")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            stored = self._part.shared_limit()
            if stored is not None and (not self.records or self.records[-1] != stored):
                self.records.append(stored)
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class _Busy:
    """Threads that PUT under a prefix through one client until stopped; counts calls done and failed."""

    def __init__(self, clients: list[Any], bucket: str, threads: int) -> None:
        self.done = self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(client, bucket, f"data/{i}-{t}/"), daemon=True)
            for i, client in enumerate(clients)
            for t in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, client: Any, bucket: str, prefix: str) -> None:
        index = 0
        while not self._stop.is_set():
            try:
                client.put_object(Bucket=bucket, Key=f"{prefix}{index}", Body=b"z")
                with self._lock:
                    self.done += 1
            except Exception:
                with self._lock:
                    self.failed += 1
            index += 1

    def wait_done(self, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.done < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.done >= count, (self.done, count)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def _fleet(make_pool: Any, local_s3: LocalS3, proxy: ChaosProxy, fleet: LocalFleet, n: int) -> list[Any]:
    pools = [make_pool(concurrency="auto", auto_tuning=AUTO, fleet=fleet, name=f"m{i}", retries=20) for i in range(n)]
    return [s3_client(local_s3, proxy, pool) for pool in pools]


def test_a_new_fleet_starts_under_the_limit_and_moves_in_bounded_steps(
    local_s3: LocalS3, chaos_proxy: ChaosProxy, s3_bucket: str, make_pool: Any
) -> None:
    """The first shared rate is one member's own (not times the members), and each change after it is a
    bounded relative step; the fleet ends near the prefix's limit."""
    chaos_proxy.limit_prefix(f"{s3_bucket}/data/", writes_per_second=R, burst=10)
    fleet = LocalFleet("cold")
    watch = _Watch(fleet)
    pools = [make_pool(concurrency="auto", auto_tuning=AUTO, fleet=fleet, name=f"m{i}", retries=20) for i in range(4)]
    busy = _Busy([s3_client(local_s3, chaos_proxy, pool) for pool in pools], s3_bucket, threads=6)
    try:
        busy.wait_done(int(8 * R))
    finally:
        busy.stop()
        watch.stop()
    assert busy.failed == 0
    rates = [record.rate for record in watch.records if record.rate is not None]
    assert rates, watch.records
    # a conservative start: the first rate is one member's own cut (not times the members)
    local_cuts = [c.new_rate for pool in pools for c in pool.limit_history() if c.reason == "throttling"]
    assert any(cut is not None and abs(cut - rates[0]) <= 1e-6 * rates[0] for cut in local_cuts), (
        rates[0],
        local_cuts,
    )
    top = max(SLOW_START, FAST_RISE, 1 + PROBE)
    paced = [record for record in watch.records if record.rate is not None]
    for before, after in itertools.pairwise(paced):
        assert before.rate is not None and after.rate is not None
        deepest = MAX_CUT if before.ceiling is not None else MAX_START_CUT  # a slow start's rate never held
        assert deepest * before.rate * (1 - 1e-9) <= after.rate <= top * before.rate * (1 + 1e-9), watch.records
    assert 0.5 * R <= rates[-1] <= 1.5 * R, watch.records


def _empty(fleet: LocalFleet) -> None:
    """What a store restarted empty looks like: every partition forgets its state (test helper)."""
    for part in list(fleet._partitions.values()):
        with part._lock:
            part._tokens, part._leases, part._limit, part._retry = None, {}, None, None


def test_a_store_restarted_empty_gets_the_fleets_rate_back_not_a_share(
    local_s3: LocalS3, chaos_proxy: ChaosProxy, s3_bucket: str, make_pool: Any
) -> None:
    """The store goes away, comes back empty, and the members rejoin one by one: the first to rejoin
    counts itself alone, yet it restores the fleet's last rate, not its own share of it."""
    chaos_proxy.limit_prefix(f"{s3_bucket}/data/", writes_per_second=R, burst=10)
    inner = LocalFleet("rebuild")
    store = Store()
    fleet = FlakyFleet(inner, store)
    busy = _Busy(_fleet(make_pool, local_s3, chaos_proxy, fleet, 4), s3_bucket, threads=6)
    watch: _Watch | None = None
    try:
        busy.wait_done(int(6 * R))
        before = inner.partition("").shared_limit()
        assert before is not None and before.rate is not None
        store.mode = "down"
        time.sleep(1.5)  # every member falls back to local control
        _empty(inner)
        watch = _Watch(inner)
        store.mode = "up"
        done = busy.done
        busy.wait_done(done + int(R))  # the members rejoin and keep working
    finally:
        store.mode = "up"
        busy.stop()
        if watch is not None:
            watch.stop()
    assert busy.failed == 0
    assert watch.records, "nobody rebuilt the record"
    rebuilt = watch.records[0]
    assert rebuilt.version == 1 and rebuilt.rate is not None, watch.records
    # the last fleet rate a member knew (0.25 of it would be one member's share)
    assert rebuilt.rate >= 0.6 * before.rate, (before, watch.records)


def test_a_saturated_member_gives_back_its_surplus_slots(make_pool: Any) -> None:
    """One pool keeps all of a fleet's slots busy; a second pool that gets work must get its fair share
    (before, the first gave back only slots it was not using: never, while saturated)."""
    fleet = LocalFleet("slots")
    busy = make_pool(concurrency=8, fleet=fleet, fleet_concurrency=2, name="busy")
    stop = threading.Event()

    def feed() -> None:  # short tasks, always 8 queued or running: the busy pool stays saturated
        while not stop.is_set():
            batch = [busy.submit(time.sleep, 0.01) for _ in range(8)]
            for future in batch:
                future.result(timeout=60)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        time.sleep(1.0)  # the busy pool alone: it holds both slots
        late = make_pool(concurrency=8, fleet=fleet, fleet_concurrency=2, name="late")
        futures = [late.submit(time.sleep, 0.01) for _ in range(5)]
        for future in futures:
            future.result(timeout=30)  # a hang here is the starvation
    finally:
        stop.set()
        feeder.join(60)
