"""A store that is unreachable, killed, restarted empty or slow: every call returns or raises FleetUnavailable in time.

The bound checked is the backend's time box (one connect and one reply,
each within ``call_timeout``, plus one reply when a restarted store must be
sent a script again), with a generous allowance for a loaded machine:
these tests look for hangs, not for speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from s3pool_redis import RedisFleetBackend
from s3pool_redis.testing import RedisServer, free_port

from s3pool_plugins import FleetPartition, FleetUnavailable, SharedLimit

CALL_TIMEOUT = 0.2
BOUND = 3 * CALL_TIMEOUT + 5.0
"""Seconds any call may take: the time box (at most three socket waits) and slack for a busy machine (CI saw a
call take 2.4 s at load); a call that hung would take until its thread's join gives up."""

CALLS: dict[str, Callable[[FleetPartition], object]] = {
    "take_tokens": lambda part: part.take_tokens(2, 100.0, 10),
    "lease_slots": lambda part: part.lease_slots("m", 1, 4, 5.0),
    "renew_slots": lambda part: part.renew_slots("m", 5.0),
    "release_slots": lambda part: part.release_slots("m", 1),
    "shared_limit": lambda part: part.shared_limit(),
    "propose_limit": lambda part: part.propose_limit(SharedLimit(rate=1.0, limit=1, ceiling=None)),
    "take_retry": lambda part: part.take_retry(1, 10),
    "give_retry": lambda part: part.give_retry(1, 10),
}


def timed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


@pytest.mark.parametrize("name", sorted(CALLS))
def test_unreachable_at_start_raises_fleet_unavailable_then_joins(name: str) -> None:
    server = RedisServer()
    server._port = free_port()  # nothing listens there yet
    backend = RedisFleetBackend(server.url(), "faults", call_timeout=CALL_TIMEOUT)
    part = backend.partition("p")
    elapsed, error = timed(lambda: CALLS[name](part))
    assert isinstance(error, FleetUnavailable), error
    assert backend.description in str(error) and name in str(error)
    assert elapsed < BOUND
    with server:
        elapsed, error = timed(lambda: CALLS[name](part))
        assert error is None and elapsed < BOUND
    backend.close()


def test_killed_mid_run_only_fleet_unavailable_and_back_after_restart(redis_server: RedisServer) -> None:
    backend = RedisFleetBackend(redis_server.url(), "faults", call_timeout=CALL_TIMEOUT)
    parts = [backend.partition(f"p{i}") for i in range(3)]
    stop = threading.Event()
    outcomes: list[tuple[str, float, BaseException | None]] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        names = sorted(CALLS)
        step = 0
        while not stop.is_set():
            name = names[(index + step) % len(names)]
            elapsed, error = timed(lambda name=name: CALLS[name](parts[index]))  # type: ignore[misc]
            with lock:
                outcomes.append((name, elapsed, error))
            step += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    redis_server.kill()
    time.sleep(0.5)
    redis_server.start()

    def recovered() -> bool:
        with lock:
            return len(outcomes) >= 6 and all(error is None for _, _, error in outcomes[-6:])

    # Until the calls answer again (a call that began before the restart may still time out after it; on a
    # loaded machine that takes a while): a wait that succeeds returns early, one that never does fails below.
    deadline = time.monotonic() + 30
    while not recovered() and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive(), "a backend call hung"
    unexpected = [(name, error) for name, _, error in outcomes if error and not isinstance(error, FleetUnavailable)]
    assert not unexpected
    assert max(elapsed for _, elapsed, _ in outcomes) < BOUND
    assert any(isinstance(error, FleetUnavailable) for _, _, error in outcomes), "the kill was not seen"
    tail = outcomes[-6:]
    assert all(error is None for _, _, error in tail), f"not back after the restart: {tail}"
    backend.close()


@pytest.mark.parametrize("fault", ["freeze", "pause"])
def test_slow_store_is_time_boxed_and_recovers(redis_server: RedisServer, fault: str) -> None:
    backend = RedisFleetBackend(redis_server.url(), "faults", call_timeout=CALL_TIMEOUT)
    part = backend.partition("p")
    assert part.take_tokens(1, 100.0, 10).granted == 1
    if fault == "freeze":
        redis_server.freeze()
    else:
        redis_server.pause(3.0)
    names = sorted(CALLS) if fault == "freeze" else ["lease_slots", "propose_limit", "take_tokens"]
    try:
        for name in names:
            elapsed, error = timed(lambda: CALLS[name](part))  # noqa: B023 (called at once)
            assert isinstance(error, FleetUnavailable), (name, error)
            assert "TimeoutError" in str(error)
            assert elapsed < BOUND, (name, elapsed)
    finally:
        if fault == "freeze":
            redis_server.thaw()
    deadline = time.monotonic() + 8.0
    while True:
        elapsed, error = timed(lambda: part.take_tokens(1, 100.0, 10))
        if error is None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert error is None, "the backend did not recover after the store answered again"
    backend.close()
