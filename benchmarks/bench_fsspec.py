"""Benchmark: pandas Parquet reads of a multi-file dataset, through the pool's fsspec layer and through plain s3fs.

Run from the repository root::

    python benchmarks/bench_fsspec.py            # full run (about 2 to 3 minutes)
    python benchmarks/bench_fsspec.py --quick    # smoke run (about 30 s)
    python benchmarks/bench_fsspec.py --json out.json --strict

Setup: a local S3 (moto, ``LocalS3``) and two ``ChaosProxy`` instances in
front of it, one clean and one answering 20% of requests with 503
``SlowDown`` (seeded), all in a *separate process*, so that the server's
CPU time does not compete with the client's for the GIL (a real S3 is not in
your process either). A dataset of F Parquet files (pyarrow, R rows each) is
written once; every timed run is one ``pandas.read_parquet`` of the whole
dataset (``engine="pyarrow"``), checked against the expected frame after the
clock stops.

Variants, measured in the same run:

- ``s3fs (baseline)``: ``pd.read_parquet("s3://bucket/ds", storage_options=...)``,
  plain s3fs with its own retries (botocore's legacy mode, then s3fs's
  ``_error_wrapper``);
- ``pool::s3:// URL``: the same call on ``pool::s3://bucket/ds`` with
  ``storage_options={"pool": {"pool": pool}, "s3": ...}``;
- ``install_fsspec + s3://``: the baseline's call unchanged, after
  ``install_fsspec(pool)`` (installed and removed around each run).

The pool is ``OperationsPool(concurrency=16, retries=8,
load_entrypoints=False)`` with its other options at their defaults (backoff
base 1 s, full jitter, the retry budget); 16 is above pyarrow's default IO
parallelism (8 threads), so the limit itself does not slow the pooled runs.
Under SlowDown a fourth, informational variant uses a pool with a 0.1 s
backoff base, to show how much of the goodput is the backoff's choice.

Rounds alternate the order of the variants (baseline first, then last) so
that slow phases of a noisy machine hit every variant. Each variant's
figure is its best round (noise only makes a run slower); the median and the
median of the per-round paired ratios are shown too. Without faults the
target is judged on the ratio of the best rounds: a pooled read takes at
most 1.05x the baseline's time. Under SlowDown there is no target: the
report gives each variant's goodput (dataset bytes and rows per second of
successful reads), its failed reads, and the requests and throttles the
proxy saw per read. This is a benchmark script, not a test: it never fails
on a missed target (``--strict`` makes it exit 1 in that case).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET = 1.05  # pooled time / baseline time, fault-free, best rounds
CONCURRENCY = 16
RETRIES = 8
THROTTLE_RATE = 0.2
SHORT_BACKOFF = 0.1  # seconds: an informational pooled variant under SlowDown with a shorter backoff base


def _import_package() -> Any:
    """Import s3pool_plugins, from the installed package or from this checkout."""
    try:
        return importlib.import_module("s3pool_plugins")
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        return importlib.import_module("s3pool_plugins")


# ----------------------------------------------------------------- the server


def serve() -> None:
    """The server process: LocalS3 and two proxies; answers ``bucket``, ``stats``, ``reset`` and ``quit`` on stdin."""
    _import_package()
    from s3pool_plugins.testing import ChaosProxy, LocalS3

    with (
        LocalS3() as server,
        ChaosProxy(server.endpoint_url) as clean,
        ChaosProxy(server.endpoint_url, seed=20) as throttled,
    ):
        throttled.configure(throttle_rate=THROTTLE_RATE)
        proxies = {"clean": clean, "throttled": throttled}
        print(
            json.dumps(
                {
                    "direct": server.endpoint_url,
                    "clean": clean.endpoint_url,
                    "throttled": throttled.endpoint_url,
                    "storage_options": server.storage_options(),
                }
            ),
            flush=True,
        )
        for line in sys.stdin:
            command, _, name = line.strip().partition(" ")
            if command == "quit":
                break
            if command == "bucket":
                print(json.dumps({"bucket": server.create_bucket(name)}), flush=True)
                continue
            proxy = proxies[name]
            if command == "reset":
                proxy.reset_counts()
                print("{}", flush=True)
            elif command == "stats":
                proxy.wait_idle(5)
                stats = proxy.stats()
                fields = ("requests", "throttled", "in_flight_peak")
                print(json.dumps({field: getattr(stats, field) for field in fields}), flush=True)


class Server:
    """The client's handle on the server process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.info = json.loads(self.process.stdout.readline())

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def options(self, endpoint: str) -> dict[str, Any]:
        options = json.loads(json.dumps(self.info["storage_options"]))
        options["client_kwargs"]["endpoint_url"] = self.info[endpoint]
        return options

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(30)


# ------------------------------------------------------------------- the data


def write_dataset(server: Server, bucket: str, files: int, rows: int) -> tuple[Any, int]:
    """Write ``files`` Parquet files; returns the expected frame and the dataset's size in bytes."""
    import numpy as np
    import pandas as pd
    import s3fs

    server.ask(f"bucket {bucket}")
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **server.options("direct"))
    rng = np.random.default_rng(1)
    frames = []
    for number in range(files):
        frame = pd.DataFrame(
            {
                "id": np.arange(number * rows, (number + 1) * rows, dtype="int64"),
                "value": rng.normal(size=rows),
                "group": rng.integers(0, 100, size=rows),
                "label": [f"item-{i % 997}" for i in range(rows)],
            }
        )
        with fs.open(f"{bucket}/ds/part-{number:04d}.parquet", "wb") as file:
            frame.to_parquet(file, engine="pyarrow", index=False)
        frames.append(frame)
    size = sum(info["size"] for info in fs.find(f"{bucket}/ds", detail=True).values())
    return pd.concat(frames, ignore_index=True), size


# --------------------------------------------------------------- the variants


class Variants:
    """The three ways to read the dataset, for one endpoint."""

    def __init__(self, server: Server, endpoint: str, bucket: str, pool: Any) -> None:
        self.options = server.options(endpoint)
        self.url = f"s3://{bucket}/ds"
        self.pool = pool

    def baseline(self) -> Any:
        import pandas as pd

        return pd.read_parquet(self.url, engine="pyarrow", storage_options=self.options)

    def pool_url(self) -> Any:
        import pandas as pd

        options = {"pool": {"pool": self.pool}, "s3": self.options}
        return pd.read_parquet(f"pool::{self.url}", engine="pyarrow", storage_options=options)

    def installed(self) -> Any:
        import pandas as pd

        from s3pool_plugins import install_fsspec, uninstall_fsspec

        install_fsspec(self.pool)
        try:
            return pd.read_parquet(self.url, engine="pyarrow", storage_options=self.options)
        finally:
            uninstall_fsspec()

    def all(self) -> list[tuple[str, Callable[[], Any]]]:
        return [
            ("s3fs (baseline)", self.baseline),
            ("pool::s3:// URL", self.pool_url),
            ("install_fsspec + s3://", self.installed),
        ]


def same_frame(read: Any, expected: Any) -> bool:
    read = read.sort_values("id").reset_index(drop=True)
    return bool(read.equals(expected))


def run_rounds(
    variants: list[tuple[str, Callable[[], Any]]],
    rounds: int,
    expected: Any,
    server: Server,
    proxy: str,
    pools: list[Any],
) -> dict[str, dict[str, Any]]:
    """Run each variant once per round, alternating the order; failures are recorded, not raised."""
    results: dict[str, dict[str, Any]] = {
        name: {"seconds": [], "failures": 0, "errors": [], "requests": [], "throttled": [], "in_flight_peak": []}
        for name, _ in variants
    }
    for index in range(rounds):
        order = variants if index % 2 == 0 else list(reversed(variants))
        for name, read in order:
            gc.collect()
            server.ask(f"reset {proxy}")
            start = time.perf_counter()
            try:
                frame = read()
            except Exception as error:
                elapsed = time.perf_counter() - start
                results[name]["failures"] += 1
                results[name]["errors"].append(f"{type(error).__name__}: {error}"[:200])
                results[name]["seconds"].append(None)
            else:
                elapsed = time.perf_counter() - start
                if not same_frame(frame, expected):
                    raise RuntimeError(f"{name}: the frame read back differs from the one written")
                results[name]["seconds"].append(elapsed)
            seen = server.ask(f"stats {proxy}")
            for field in ("requests", "throttled", "in_flight_peak"):
                results[name][field].append(seen[field])
            for pool in pools:
                stats = pool.stats()
                if stats.active or stats.pending:
                    raise RuntimeError(f"{name}: the pool did not settle: {stats}")
    return results


def summarize(results: dict[str, dict[str, Any]], size: int, rows: int, baseline: str) -> None:
    for result in results.values():
        times = [t for t in result["seconds"] if t is not None]
        result["best_s"] = min(times) if times else None
        result["median_s"] = statistics.median(times) if times else None
        total = sum(times)
        good = len(times)
        result["goodput_mb_per_s"] = size * good / total / 1e6 if total else 0.0
        result["goodput_rows_per_s"] = rows * good / total if total else 0.0
        result["requests_per_read"] = statistics.median(result["requests"]) if result["requests"] else None
        result["throttled_per_read"] = statistics.median(result["throttled"]) if result["throttled"] else None
        result["in_flight_peak"] = max(result["in_flight_peak"]) if result["in_flight_peak"] else None
    base = results[baseline]
    for name, result in results.items():
        if name == baseline or result["best_s"] is None or base["best_s"] is None:
            continue
        result["ratio_best"] = result["best_s"] / base["best_s"]
        paired = [p / b for p, b in zip(result["seconds"], base["seconds"]) if p is not None and b is not None]
        result["ratio_median_paired"] = statistics.median(paired) if paired else None


def print_results(title: str, results: dict[str, dict[str, Any]], target: float | None) -> None:
    print(f"\n{title}")
    header = (
        f"  {'variant':<30} {'best s':>7} {'median s':>8} {'ratio':>6} {'ratio(med)':>10} {'MB/s':>7} "
        f"{'rows/s':>10} {'failed':>6} {'req/read':>8} {'503/read':>8} {'peak':>5}  target"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for name, r in results.items():

        def number(value: Any, width: int, digits: int = 3) -> str:
            return f"{value:>{width}.{digits}f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"

        verdict = ""
        if target is not None and "ratio_best" in r:
            r["target"] = target
            r["target_met"] = r["ratio_best"] <= target
            verdict = f"{'MET' if r['target_met'] else 'MISSED'} (<= {target}x)"
        print(
            f"  {name:<30} {number(r['best_s'], 7)} {number(r['median_s'], 8)} {number(r.get('ratio_best'), 6, 2)} "
            f"{number(r.get('ratio_median_paired'), 10, 2)} {number(r['goodput_mb_per_s'], 7, 1)} "
            f"{r['goodput_rows_per_s']:>10,.0f} {r['failures']:>6} {number(r['requests_per_read'], 8, 0)} "
            f"{number(r['throttled_per_read'], 8, 0)} {number(r['in_flight_peak'], 5, 0)}  {verdict}"
        )
        for error in r["errors"][:2]:
            print(f"      failed read: {error}")


def environment() -> dict[str, Any]:
    import fsspec
    import pandas
    import pyarrow
    import s3fs

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    core = importlib.import_module("bench_core")
    return {
        **core.environment(),
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "fsspec": fsspec.__version__,
        "s3fs": s3fs.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller dataset and fewer rounds (about 30 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--rounds", type=int, help="rounds without faults (default 15, quick 3)")
    parser.add_argument("--fault-rounds", type=int, help="rounds under SlowDown (default 5, quick 2)")
    parser.add_argument("--files", type=int, help="Parquet files in the dataset (default 48, quick 16)")
    parser.add_argument("--rows", type=int, help="rows per file (default 20,000, quick 10,000)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the fault-free target is missed")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0

    rounds = args.rounds or (3 if args.quick else 15)
    fault_rounds = args.fault_rounds or (2 if args.quick else 5)
    files = args.files or (16 if args.quick else 48)
    rows = args.rows or (10_000 if args.quick else 20_000)

    package = _import_package()
    env = environment()
    print("s3pool_plugins fsspec benchmark: pandas.read_parquet of a multi-file dataset")
    print(
        f"  python {env['python']}, pandas {env['pandas']}, pyarrow {env['pyarrow']}, fsspec {env['fsspec']}, "
        f"s3fs {env['s3fs']}, {env['usable_cpus']} usable CPUs, load {env['loadavg']}"
    )
    started = time.perf_counter()
    server = Server()
    try:
        bucket = "bench-fsspec"
        expected, size = write_dataset(server, bucket, files, rows)
        total_rows = len(expected)
        print(f"  dataset: {files} files, {total_rows:,} rows, {size / 1e6:.1f} MB; pool concurrency {CONCURRENCY}")
        pool = package.OperationsPool(concurrency=CONCURRENCY, retries=RETRIES, load_entrypoints=False)

        clean = Variants(server, "clean", bucket, pool)
        for _, read in clean.all():  # warm up: connections, imports, caches
            read()
        clean_results = run_rounds(clean.all(), rounds, expected, server, "clean", [pool])
        summarize(clean_results, size, total_rows, "s3fs (baseline)")
        print_results(f"1. No faults ({rounds} rounds, one read of the whole dataset per round)", clean_results, TARGET)

        throttled = Variants(server, "throttled", bucket, pool)
        short = package.OperationsPool(
            concurrency=CONCURRENCY, retries=RETRIES, retry_delay=SHORT_BACKOFF, load_entrypoints=False
        )
        short_backoff = Variants(server, "throttled", bucket, short)
        variants = [*throttled.all(), (f"pool::s3://, backoff {SHORT_BACKOFF} s", short_backoff.pool_url)]
        fault_results = run_rounds(variants, fault_rounds, expected, server, "throttled", [pool, short])
        short.shutdown()
        summarize(fault_results, size, total_rows, "s3fs (baseline)")
        print_results(
            f"2. {THROTTLE_RATE:.0%} of requests answered 503 SlowDown ({fault_rounds} rounds; goodput, no target)",
            fault_results,
            None,
        )
        pool_stats = pool.stats().as_dict()
        pool.shutdown()
    finally:
        server.close()

    elapsed = time.perf_counter() - started
    targets = {name: r["target_met"] for name, r in clean_results.items() if "target_met" in r}
    print(f"\nTargets (ratios judged on best rounds): {sum(targets.values())} of {len(targets)} met")
    for name, met in targets.items():
        print(f"  {'MET   ' if met else 'MISSED'} {name}: pooled time <= {TARGET}x s3fs's, no faults")
    print(f"\nTotal time {elapsed:.1f} s")
    if args.json:
        report = {
            "environment": env,
            "settings": {
                "quick": args.quick,
                "rounds": rounds,
                "fault_rounds": fault_rounds,
                "files": files,
                "rows_per_file": rows,
                "dataset_bytes": size,
                "concurrency": CONCURRENCY,
                "retries": RETRIES,
                "throttle_rate": THROTTLE_RATE,
            },
            "no_faults": clean_results,
            "slowdown": fault_results,
            "pool_stats": pool_stats,
            "targets": targets,
            "elapsed_s": elapsed,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"Wrote {args.json}")
    return 1 if args.strict and not all(targets.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
