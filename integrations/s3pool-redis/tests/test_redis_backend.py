"""What the contract kit cannot see from outside: the store's own state, keys, TTLs and lost scripts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot
from s3pool_redis import RedisFleetBackend
from s3pool_redis.keys import PartitionKeys, fleet_pattern
from s3pool_redis.testing import RedisServer

from s3pool_plugins import FleetUnavailable, SharedLimit

SUM_HELD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local total = 0
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. string.format('%.17g', now), '+inf')) do
  total = total + tonumber(redis.call('HGET', KEYS[1], member) or '0')
end
return total
"""


@pytest.fixture
def backend(redis_server: RedisServer) -> Iterator[RedisFleetBackend]:
    made = RedisFleetBackend(redis_server.url(), "unit", call_timeout=2.0)
    yield made
    made.close()


def test_leases_held_at_the_store_never_exceed_the_limit(redis_server: RedisServer) -> None:
    """Four members churn leases; a monitor sums the unexpired leases atomically at the store the whole time."""
    limit = 5
    backends = [RedisFleetBackend(redis_server.url(), "churn", call_timeout=2.0) for _ in range(4)]
    keys = PartitionKeys.of("churn", "p")
    stop = threading.Event()
    peaks: list[int] = []
    errors: list[BaseException] = []

    def monitor() -> None:
        with redis_server.client() as client:
            check = client.register_script(SUM_HELD)
            while not stop.is_set():
                peaks.append(int(check(keys=[keys.slots, keys.leases])))

    def churn(index: int) -> None:
        try:
            part = backends[index].partition("p")
            for round_ in range(80):
                if round_ % 3 == 2:
                    part.release_slots(f"m{index}", 1 + round_ % 2)
                else:
                    part.lease_slots(f"m{index}", 1 + round_ % 3, limit, 0.05 + 0.05 * (round_ % 4))
        except BaseException as exc:
            errors.append(exc)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    workers = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    stop.set()
    watcher.join(10)
    for made in backends:
        made.close()
    assert not errors
    assert peaks and max(peaks) <= limit
    assert max(peaks) == limit, "the churn never filled the limit: the check saw nothing"


@settings(max_examples=30, deadline=None)
@given(fleet=st.text(min_size=1, max_size=12), partition=st.text(max_size=12))
def test_keys_of_one_partition_share_one_cluster_slot(fleet: str, partition: str) -> None:
    keys = PartitionKeys.of(fleet, partition)
    names = (keys.rate, keys.slots, keys.leases, keys.limit, keys.retry)
    assert len({key_slot(name.encode()) for name in names}) == 1
    assert all(name.startswith("s3pool:{") for name in names)
    tag = keys.rate[len("s3pool:{") : keys.rate.index("}")]
    assert tag and "{" not in tag, "the hash tag is the whole partition name, never an empty or cut one"


@settings(max_examples=50, deadline=None)
@given(
    a=st.tuples(st.text(min_size=1, max_size=6), st.text(max_size=6)),
    b=st.tuples(st.text(min_size=1, max_size=6), st.text(max_size=6)),
)
def test_different_fleets_or_partitions_never_share_a_key(a: tuple[str, str], b: tuple[str, str]) -> None:
    if a != b:
        assert PartitionKeys.of(*a).rate != PartitionKeys.of(*b).rate


def test_every_key_is_namespaced_by_the_fleet_and_expires(
    backend: RedisFleetBackend, redis_server: RedisServer
) -> None:
    part = backend.partition("bucket/prefix/")
    part.take_tokens(1, 10.0, 5)
    part.lease_slots("m", 2, 4, 30.0)
    part.propose_limit(SharedLimit(rate=10.0, limit=4, ceiling=None))
    part.take_retry(1, 10)
    with redis_server.client() as client:
        keys = sorted(key.decode() for key in client.scan_iter(match=fleet_pattern("unit")))
        assert keys == sorted(
            f"s3pool:{{unit:bucket/prefix/}}:{kind}" for kind in ("rate", "slots", "leases", "limit", "retry")
        )
        assert sorted(key.decode() for key in client.keys("*")) == keys
        for key in keys:
            assert 0 < client.pttl(key) <= backend.key_ttl_ms


def test_a_lease_longer_than_the_key_ttl_keeps_its_keys(redis_server: RedisServer) -> None:
    backend = RedisFleetBackend(redis_server.url(), "ttl", key_ttl=1.0)
    part = backend.partition("p")
    assert part.lease_slots("m", 1, 2, 5.0) == 1
    keys = PartitionKeys.of("ttl", "p")
    with redis_server.client() as client:
        assert client.pttl(keys.slots) > 4000 and client.pttl(keys.leases) > 4000
    backend.close()


def test_a_store_that_lost_its_scripts_runs_them_again(backend: RedisFleetBackend, redis_server: RedisServer) -> None:
    part = backend.partition("p")
    assert part.take_tokens(1, 1.0, 3).granted == 1
    redis_server.command("SCRIPT", "FLUSH")
    assert part.take_tokens(1, 1.0, 3).granted == 1
    assert part.lease_slots("m", 1, 1, 10.0) == 1


def test_a_store_restarted_empty_is_a_fresh_start(backend: RedisFleetBackend, redis_server: RedisServer) -> None:
    part = backend.partition("p")
    assert part.take_tokens(3, 0.001, 3).granted == 3
    assert part.lease_slots("m", 2, 2, 30.0) == 2
    stored = part.propose_limit(SharedLimit(rate=50.0, limit=8, ceiling=60.0))
    assert part.take_retry(5, 5)
    redis_server.restart()
    # The first call may meet the connection the old server closed; the backend reconnects within the call.
    assert part.take_tokens(3, 0.001, 3).granted == 3
    assert part.renew_slots("m", 30.0) == 0
    assert part.lease_slots("other", 2, 2, 30.0) == 2
    assert part.shared_limit() is None
    rebuilt = part.propose_limit(SharedLimit(rate=50.0, limit=8, ceiling=60.0, version=stored.version))
    assert (rebuilt.rate, rebuilt.limit, rebuilt.ceiling, rebuilt.version) == (50.0, 8, 60.0, 1)
    assert part.take_retry(5, 5)


def test_bucket_time_is_the_store_clock(backend: RedisFleetBackend) -> None:
    """A member never compares the store's times with its own: updated_at is Redis's TIME."""
    stored = backend.partition("p").propose_limit(SharedLimit(rate=None, limit=1, ceiling=None))
    assert abs(stored.updated_at - time.time()) < 60  # the same machine: both clocks are wall clocks here


def test_closed_backend_raises_fleet_unavailable(redis_server: RedisServer) -> None:
    backend = RedisFleetBackend(redis_server.url(), "closed")
    part = backend.partition("p")
    assert part.take_retry(1, 2)
    backend.close()
    backend.close()
    with pytest.raises(FleetUnavailable, match="closed"):
        part.take_retry(1, 2)


def test_foreign_data_in_our_keys_is_unavailable_not_a_crash(
    backend: RedisFleetBackend, redis_server: RedisServer
) -> None:
    keys = PartitionKeys.of("unit", "p")
    redis_server.command("SET", keys.limit, "not a hash")
    with pytest.raises(FleetUnavailable, match="WRONGTYPE"):
        backend.partition("p").shared_limit()
    redis_server.command("DEL", keys.limit)
    redis_server.command("HSET", keys.limit, "version", "3", "limit", "x", "updated_at", "1")
    with pytest.raises(FleetUnavailable, match="unexpected reply"):
        backend.partition("p").shared_limit()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limit=st.integers(min_value=1, max_value=6),
    steps=st.lists(
        st.one_of(
            st.tuples(st.sampled_from(["lease", "release", "renew"]), st.integers(0, 2), st.integers(0, 4)),
            st.tuples(st.sampled_from(["restart", "flush scripts"]), st.just(0), st.just(0)),
        ),
        max_size=25,
    ),
)
def test_slots_follow_the_model_across_restarts(
    redis_server: RedisServer, limit: int, steps: list[tuple[str, int, int]]
) -> None:
    """A restart empties the store: every member holds nothing after it, and the model starts over."""
    backend = RedisFleetBackend(redis_server.url(), f"model-{time.monotonic_ns()}", call_timeout=2.0)
    part = backend.partition("p")
    model = [0, 0, 0]
    for action, member, count in steps:
        name = f"m{member}"
        if action == "restart":
            redis_server.restart()
            model = [0, 0, 0]
            continue
        if action == "flush scripts":
            redis_server.command("SCRIPT", "FLUSH")
            continue
        others = sum(model) - model[member]
        if action == "lease":
            expected = model[member] + min(count, limit - others - model[member])
            got = part.lease_slots(name, count, limit, 30.0)
        elif action == "release":
            expected = max(0, model[member] - count)
            got = part.release_slots(name, count)
        else:
            expected = model[member]
            got = part.renew_slots(name, 30.0)
        assert got == expected, (action, name, count, model)
        model[member] = got
        assert sum(model) <= limit
    backend.close()
