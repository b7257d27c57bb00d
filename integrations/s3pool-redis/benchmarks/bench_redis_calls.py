"""What each Redis backend call costs: microseconds per round trip, and per token when tokens come in batches.

Runs a redis-server from the testing kit on loopback (or ``--url`` for
another store) and times every backend call against a ``PING`` and
against the in-process backend. Usage::

    python integrations/s3pool-redis/benchmarks/bench_redis_calls.py [--calls 2000] [--url redis://...]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import redis
from s3pool_redis import RedisFleetBackend
from s3pool_redis.testing import RedisServer

from s3pool_plugins import FleetBackend, FleetPartition, LocalFleet, SharedLimit


def per_call_us(call: Callable[[], object], calls: int) -> tuple[float, float]:
    """(median, 99th percentile) microseconds of ``calls`` calls, after a warm-up of 50."""
    for _ in range(50):
        call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


def measure(backend: FleetBackend, calls: int) -> dict[str, tuple[float, float]]:
    """Median and p99 microseconds of each call of ``backend``."""
    part = backend.partition("bench/")
    limit = part.propose_limit(SharedLimit(rate=100.0, limit=8, ceiling=None))
    rows: dict[str, tuple[float, float]] = {}
    for batch in (1, 16, 64):
        rows[f"take_tokens(count={batch})"] = per_call_us(functools.partial(part.take_tokens, batch, 1e9, 1e9), calls)
    rows["lease_slots(+1)"] = per_call_us(lambda: part.lease_slots("m", 1, 1_000_000, 30.0), calls)
    rows["renew_slots"] = per_call_us(lambda: part.renew_slots("m", 30.0), calls)
    rows["release_slots"] = per_call_us(lambda: part.release_slots("m", 1), calls)
    rows["shared_limit"] = per_call_us(part.shared_limit, calls)
    rows["propose_limit (lost)"] = per_call_us(lambda: part.propose_limit(SharedLimit(None, 1, None)), calls)
    rows["shared_limit + propose (won)"] = per_call_us(lambda: _propose_won(part, limit), calls)
    rows["take_retry"] = per_call_us(lambda: part.take_retry(1, 1_000_000_000), calls)
    rows["give_retry"] = per_call_us(lambda: part.give_retry(1, 1_000_000_000), calls)
    return rows


def _propose_won(part: FleetPartition, first: SharedLimit) -> None:
    stored = part.shared_limit()
    version = 0 if stored is None else stored.version
    part.propose_limit(SharedLimit(rate=first.rate, limit=first.limit, ceiling=None, version=version))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls timed per row (default 2000)")
    parser.add_argument("--url", help="a redis:// URL to measure instead of a local redis-server")
    options = parser.parse_args(argv)
    if options.calls < 1:
        parser.error(f"--calls: an int >= 1 is accepted, got {options.calls}")
    if options.url is not None and not options.url.startswith("redis://"):
        parser.error(
            "--url: a redis:// URL without query parameters is accepted (the PING baseline uses redis-py's own)"
        )
    server = None if options.url else RedisServer().start()
    try:
        url = options.url if server is None else server.url()
        redis_backend = RedisFleetBackend(url, f"bench-{time.time_ns()}", call_timeout=2.0)
        with redis.Redis.from_url(url, protocol=2) as plain:
            ping = per_call_us(plain.ping, options.calls)
        remote = measure(redis_backend, options.calls)
        local = measure(LocalFleet("bench"), options.calls)
        redis_backend.close()
    finally:
        if server is not None:
            server.stop()
    print(f"{'call':<28} {'redis median':>13} {'p99':>8} {'local median':>13}  (microseconds)")
    print(f"{'PING (one round trip)':<28} {ping[0]:>13.1f} {ping[1]:>8.1f} {'-':>13}")
    for name, (median, p99) in remote.items():
        print(f"{name:<28} {median:>13.1f} {p99:>8.1f} {local[name][0]:>13.1f}")
    for batch in (16, 64):
        per_token = remote[f"take_tokens(count={batch})"][0] / batch
        print(f"per token, batches of {batch:<5} {per_token:>13.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
