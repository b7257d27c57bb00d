"""Benchmark: ``concurrency="auto"`` when the pool is not the cause of the 503s, when it is, and at a cold start.

Run from the repository root::

    python benchmarks/bench_adaptive.py                 # every scenario (a few minutes)
    python benchmarks/bench_adaptive.py --quick         # smaller jobs
    python benchmarks/bench_adaptive.py --scenario ambient --json out.json

A moto S3 server (LocalS3) runs behind a ChaosProxy in this process; every
variant is a closed loop of ``--threads`` threads that PUT small objects
under ``data/`` until the job's objects are all written (or ``--cap``
seconds passed: then the run is reported as capped, with its goodput).
Every figure is measured in the same run as its baselines, so read the
ratios, not the absolute times.

Scenarios:

- ``ambient``: 20% of requests answered 503 SlowDown at random, whatever
  the rate (other clients on the prefix, a partition being split);
  1,000 PUTs. The pool's 503s are not caused by its rate.
- ``ambient-2``: the same at 2%.
- ``limited``: the prefix takes 100 writes/s (a token bucket); 1,500 PUTs.
  The 503s are caused by the rate; the 503 share after a 5 s warm-up and
  the goodput are what count.
- ``mixed``: the same prefix at 100/s plus 5% ambient 503s.
- ``cold``: a new pool, 600 PUTs at the 100/s prefix (a burst of one
  second's worth, then 100/s); the 503 share over the first 2 s and over
  the whole job (no warm-up excluded), and the goodput of the whole job.

Variants: the pool with a fixed limit of 16, the pool on auto (default
scope and ``scope="prefix"``), boto3's standard retry mode and its adaptive
retry mode (10 connections each, boto3's defaults). The proxy's counters
give the 503s; a sampler thread reads them every 0.25 s for the shares
over time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from s3pool_plugins import OperationsPool
from s3pool_plugins.adapters.botocore import install
from s3pool_plugins.testing import ChaosProxy, LocalS3

BODY = b"x" * 1024
PREFIX = "data/"


@dataclass
class Result:
    scenario: str
    variant: str
    calls: int
    done: int
    seconds: float
    capped: bool
    attempts: int
    throttled: int
    share_first_2s: float
    share_after_5s: float
    share_all: float

    @property
    def goodput(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


def _session(server: LocalS3) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key, region_name=server.region
    )


def _make_client(server: LocalS3, endpoint: str, variant: str, threads: int) -> tuple[Any, OperationsPool | None]:
    from botocore.config import Config

    if variant.startswith("boto3"):
        mode = "adaptive" if variant == "boto3-adaptive" else "standard"
        config = Config(retries={"mode": mode}, max_pool_connections=10, s3={"addressing_style": "path"})
        return _session(server).client("s3", endpoint_url=endpoint, config=config), None
    options: dict[str, Any] = {"load_entrypoints": False, "seed": 1, "name": "bench-adaptive"}
    if variant == "fixed-16":
        options["concurrency"] = 16
    else:
        options["concurrency"] = "auto"
        options["auto_tuning"] = {"max_concurrency": 64, "scope": "prefix" if variant == "auto-prefix" else "pool"}
    pool = OperationsPool(**options)
    session = _session(server)
    install(session, pool)
    config = Config(max_pool_connections=max(threads, 64), s3={"addressing_style": "path"})
    return session.client("s3", endpoint_url=endpoint, config=config), pool


def _share(samples: list[tuple[float, int, int]], start: float, end: float) -> float:
    """The 503 share of the requests the proxy saw between ``start`` and ``end`` seconds into the run."""
    inside = [s for s in samples if start <= s[0] <= end]
    before = [s for s in samples if s[0] <= start]
    if not inside:
        return 0.0
    first = before[-1] if before else (0.0, 0, 0)
    last = inside[-1]
    requests = last[1] - first[1]
    return (last[2] - first[2]) / requests if requests else 0.0


def run(
    server: LocalS3,
    scenario: str,
    variant: str,
    calls: int,
    threads: int,
    cap: float,
    configure: Callable[[ChaosProxy, str], None],
) -> Result:
    bucket = server.create_bucket()
    with ChaosProxy(server.endpoint_url, seed=1) as proxy:
        configure(proxy, bucket)
        client, pool = _make_client(server, proxy.endpoint_url, variant, threads)
        keys = iter(range(calls))
        lock = threading.Lock()
        done = [0]
        stop = threading.Event()
        samples: list[tuple[float, int, int]] = [(0.0, 0, 0)]
        started = time.monotonic()

        def sampler() -> None:
            while not stop.wait(0.25):
                stats = proxy.stats()
                samples.append((time.monotonic() - started, stats.requests, stats.throttled))

        def worker() -> None:
            while time.monotonic() - started < cap:
                with lock:
                    index = next(keys, None)
                if index is None:
                    return
                try:
                    client.put_object(Bucket=bucket, Key=f"{PREFIX}obj-{index}", Body=BODY)
                except Exception:  # failed for good: not counted as done
                    continue
                with lock:
                    done[0] += 1

        watcher = threading.Thread(target=sampler, daemon=True)
        watcher.start()
        with ThreadPoolExecutor(threads) as executor:
            for _ in range(threads):
                executor.submit(worker)
        seconds = time.monotonic() - started
        stop.set()
        watcher.join()
        stats = proxy.stats()
        samples.append((seconds, stats.requests, stats.throttled))
        client.close()
        if pool is not None:
            if "--verbose" in sys.argv:
                for change in pool.limit_history()[-int(os.environ.get("BENCH_HISTORY", "12")) :]:
                    print("   ", change)
                print("   ", pool.stats())
            pool.shutdown(wait=True)
    try:
        server.delete_bucket(bucket)
    except Exception:
        pass
    return Result(
        scenario,
        variant,
        calls,
        done[0],
        seconds,
        seconds >= cap,
        stats.requests,
        stats.throttled,
        _share(samples, 0.0, 2.0),
        _share(samples, 5.0, seconds),
        stats.throttled / stats.requests if stats.requests else 0.0,
    )


def _ambient(rate: float) -> Callable[[ChaosProxy, str], None]:
    def configure(proxy: ChaosProxy, bucket: str) -> None:
        proxy.configure(throttle_rate=rate)

    return configure


def _limited(rate: float, ambient: float = 0.0) -> Callable[[ChaosProxy, str], None]:
    def configure(proxy: ChaosProxy, bucket: str) -> None:
        proxy.limit_prefix(f"{bucket}/{PREFIX}", writes_per_second=rate)
        if ambient:
            proxy.configure(throttle_rate=ambient)

    return configure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=["ambient", "ambient-2", "limited", "mixed", "cold"])
    parser.add_argument("--variant", action="append")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--cap", type=float, default=120.0, help="seconds a run may last (default 120)")
    parser.add_argument("--quick", action="store_true", help="half-size jobs")
    parser.add_argument("--verbose", action="store_true", help="print the pool's last limit changes")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    scale = 0.5 if args.quick else 1.0
    scenarios: dict[str, tuple[int, Callable[[ChaosProxy, str], None]]] = {
        "ambient": (int(1000 * scale), _ambient(0.2)),
        "ambient-2": (int(1000 * scale), _ambient(0.02)),
        "limited": (int(1500 * scale), _limited(100.0)),
        "mixed": (int(1500 * scale), _limited(100.0, 0.05)),
        "cold": (600, _limited(100.0)),
    }
    variants = args.variant or ["fixed-16", "auto", "auto-prefix", "boto3", "boto3-adaptive"]
    results: list[Result] = []
    with LocalS3() as server:
        for name in args.scenario or list(scenarios):
            calls, configure = scenarios[name]
            for variant in variants:
                result = run(server, name, variant, calls, args.threads, args.cap, configure)
                results.append(result)
                print(
                    f"{name:8} {variant:15} {result.done:5}/{calls} in {result.seconds:6.1f} s"
                    f"{' (capped)' if result.capped else ''}  goodput {result.goodput:6.1f}/s  "
                    f"attempts/call {result.attempts / max(1, result.done):.2f}  503s: all {result.share_all:.1%} "
                    f"first 2 s {result.share_first_2s:.1%} after 5 s {result.share_after_5s:.1%}",
                    flush=True,
                )
            base = next((r for r in results if r.scenario == name and r.variant == "fixed-16"), None)
            if base is not None and base.goodput:
                for r in results:
                    if r.scenario == name and r.variant != "fixed-16" and r.goodput:
                        print(f"    {r.variant}: {base.goodput / r.goodput:.2f}x the time per call of fixed-16")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump([{**asdict(r), "goodput": r.goodput} for r in results], out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
