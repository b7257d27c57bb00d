"""Benchmarks for the s3pool_plugins core: per-task overhead and memory per queued task.

Run from the repository root::

    python benchmarks/bench_core.py            # full run (about 1-2 minutes)
    python benchmarks/bench_core.py --quick    # smoke run (about 15 s)
    python benchmarks/bench_core.py --json out.json

What it measures, each against a baseline measured in the same run:

1. async no-op throughput: N ``await pool.run(noop)`` gathered, concurrency C,
   with ``timeout=None`` and with the default timeout, versus
   ``asyncio.Semaphore(C)`` + ``asyncio.gather`` of the same N coroutines.
   A no-op never suspends, so no task waits for a slot there; an
   informational run (1b) makes each task yield once to time the queue path;
2. sync no-op throughput: N ``pool.submit(noop)`` then waiting for every
   future, versus ``concurrent.futures.ThreadPoolExecutor(max_workers=C)``
   (both warmed up first); the ``threads`` column is the most worker
   threads alive after a run;
3. memory per queued task (tracemalloc) on a paused pool: ``submit``, async
   ``run`` and async admission (``admit_async``), next to baselines
   (a ThreadPoolExecutor whose only worker is blocked, asyncio tasks awaiting
   an ``asyncio.Event``, asyncio tasks awaiting one shared future).

Throughput runs are repeated in rounds; the order of the variants alternates
from one round to the next so that slow phases of a noisy machine hit every
variant. The figure reported for each variant is its best round (noise only
ever makes a run slower); the median and the median of the per-round paired
ratios are shown as well. Targets are judged on the ratio of the best rounds.

Memory figures are tracemalloc's (Python allocations, not RSS). The size of a
bare ``concurrent.futures.Future`` (most of it its ``threading.Condition``)
varies by about 200 bytes with the process's history (CPython's key-sharing
instance dicts), so compare each figure with the baselines of the same run;
"over a bare Future" is the stable measure of the pool's own cost.

Plugin autoloading is disabled (``load_entrypoints=False``) and so is
monitoring (``monitoring="off"``): the figures are those of the scheduler
alone. What light and full monitoring add on top is measured against the same
pool by ``bench_metrics.py``. This is a benchmark script, not a test: it never
fails on a missed target (``--strict`` makes it exit 1 in that case).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import gc
import importlib
import json
import os
import platform
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONCURRENCY = 10
ASYNC_TARGET = 0.5
SYNC_TARGET = 0.7
MEMORY_TARGET = 1024  # bytes per queued task, for submit

MONITORING = "off"  # the scheduler alone; bench_metrics.py measures the monitoring modes

DEFAULT_TIMEOUT = "default"  # marker: build the pool without a ``timeout`` option


def _load_pool_class() -> Any:
    """Import OperationsPool, from the installed package or from this checkout."""
    try:
        module = importlib.import_module("s3pool_plugins")
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        module = importlib.import_module("s3pool_plugins")
    return module.OperationsPool


OperationsPool = _load_pool_class()


def noop() -> None:
    return None


async def anoop() -> None:
    return None


def make_pool(timeout: object, concurrency: int = CONCURRENCY) -> Any:
    options: dict[str, Any] = {
        "load_entrypoints": False,
        "monitoring": MONITORING,
        "concurrency": concurrency,
        "name": "bench",
    }
    if timeout is not DEFAULT_TIMEOUT:
        options["timeout"] = timeout
    return OperationsPool(**options)


def check_pool(pool: Any, n: int, label: str) -> dict[str, Any]:
    """Sanity checks so a broken benchmark cannot report flattering numbers."""
    stats = pool.stats()
    if stats.succeeded != n or stats.errors != 0:
        raise RuntimeError(f"{label}: {stats.succeeded} of {n} tasks succeeded, {stats.errors} errors")
    if stats.peak_active > pool.concurrency:
        raise RuntimeError(f"{label}: peak_active {stats.peak_active} > concurrency {pool.concurrency}")
    return {"peak_active": stats.peak_active}


_WORKER_PREFIXES = ("ThreadPoolExecutor", "bench-", "s3pool")


def _workers_alive() -> int:
    """Threads of earlier pools and executors still alive (long-lived helpers, such as the
    OpenTelemetry SDK's export thread, are not waited for)."""
    return sum(1 for thread in threading.enumerate() if thread.name.startswith(_WORKER_PREFIXES))


def settle(max_wait: float = 20.0) -> None:
    """Start every measurement from the same state.

    Waits until the threads of earlier pools and executors have exited (a
    pool's idle workers exit after shutdown; thousands of them exiting would
    otherwise slow down the next measurement), then collects garbage.
    """
    deadline = time.monotonic() + max_wait
    while _workers_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    gc.collect()
    time.sleep(0.02)


# --------------------------------------------------------------------- async


async def ayield() -> None:
    """A no-op that suspends once, so that tasks really wait in the pool's queue."""
    await asyncio.sleep(0)


async def _async_baseline(n: int, work: Callable[[], Any]) -> float:
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with semaphore:
            await work()

    start = time.perf_counter()
    await asyncio.gather(*[one() for _ in range(n)])
    return time.perf_counter() - start


async def _async_pool(n: int, timeout: object, info: dict[str, Any], work: Callable[[], Any]) -> float:
    pool = make_pool(timeout)
    run = pool.run
    start = time.perf_counter()
    await asyncio.gather(*[run(work) for _ in range(n)])
    elapsed = time.perf_counter() - start
    pool.shutdown(wait=True)
    info.update(check_pool(pool, n, "async pool"))
    return elapsed


def async_baseline(n: int, info: dict[str, Any]) -> float:
    settle()
    return asyncio.run(_async_baseline(n, anoop))


def async_pool_no_timeout(n: int, info: dict[str, Any]) -> float:
    settle()
    return asyncio.run(_async_pool(n, None, info, anoop))


def async_pool_default_timeout(n: int, info: dict[str, Any]) -> float:
    settle()
    return asyncio.run(_async_pool(n, DEFAULT_TIMEOUT, info, anoop))


def async_yield_baseline(n: int, info: dict[str, Any]) -> float:
    settle()
    return asyncio.run(_async_baseline(n, ayield))


def async_yield_pool_no_timeout(n: int, info: dict[str, Any]) -> float:
    settle()
    return asyncio.run(_async_pool(n, None, info, ayield))


def async_yield_pool_default_timeout(n: int, info: dict[str, Any]) -> float:
    settle()
    return asyncio.run(_async_pool(n, DEFAULT_TIMEOUT, info, ayield))


# ---------------------------------------------------------------------- sync


def _warm(executor: concurrent.futures.Executor) -> None:
    """Start the worker threads before timing, for both the pool and the baseline."""
    concurrent.futures.wait([executor.submit(noop) for _ in range(CONCURRENCY * 2)])


def sync_baseline(n: int, info: dict[str, Any]) -> float:
    settle()
    with concurrent.futures.ThreadPoolExecutor(max_workers=CONCURRENCY) as executor:
        _warm(executor)
        submit = executor.submit
        start = time.perf_counter()
        futures = [submit(noop) for _ in range(n)]
        concurrent.futures.wait(futures)
        elapsed = time.perf_counter() - start
        info["threads"] = len(executor._threads)
    return elapsed


def _sync_pool(n: int, timeout: object, info: dict[str, Any]) -> float:
    settle()
    pool = make_pool(timeout)
    _warm(pool)
    submit = pool.submit
    start = time.perf_counter()
    futures = [submit(noop) for _ in range(n)]
    concurrent.futures.wait(futures)
    elapsed = time.perf_counter() - start
    workers = getattr(pool, "_workers", None)
    if workers is not None:
        info["threads"] = workers.threads  # worker threads alive after the run
    pool.shutdown(wait=True)  # a task is counted just after its future resolves: count them all first
    info.update(check_pool(pool, n + CONCURRENCY * 2, "sync pool"))
    return elapsed


def sync_pool_no_timeout(n: int, info: dict[str, Any]) -> float:
    return _sync_pool(n, None, info)


def sync_pool_default_timeout(n: int, info: dict[str, Any]) -> float:
    return _sync_pool(n, DEFAULT_TIMEOUT, info)


# -------------------------------------------------------------- round runner

Variant = tuple[str, Callable[[int, dict[str, Any]], float]]


def run_rounds(variants: list[Variant], n: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Run every variant ``rounds`` times, alternating their order each round."""
    samples: dict[str, list[float]] = {name: [] for name, _ in variants}
    infos: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    for index in range(rounds):
        order = variants if index % 2 == 0 else list(reversed(variants))
        for name, fn in order:
            info: dict[str, Any] = {}
            samples[name].append(fn(n, info))
            infos[name].append(info)
    results: dict[str, dict[str, Any]] = {}
    for name, times in samples.items():
        results[name] = {
            "n": n,
            "seconds": times,
            "best_tasks_per_s": n / min(times),
            "median_tasks_per_s": n / statistics.median(times),
            "overhead_us_per_task": None,
            "info": infos[name],
        }
    return results


def add_ratios(results: dict[str, dict[str, Any]], baseline: str, target: float | None) -> None:
    base = results[baseline]
    base_times = base["seconds"]
    for name, result in results.items():
        if name == baseline:
            continue
        paired = [b / p for b, p in zip(base_times, result["seconds"])]
        result["ratio_best"] = result["best_tasks_per_s"] / base["best_tasks_per_s"]
        result["ratio_median_paired"] = statistics.median(paired)
        if target is not None:
            result["target"] = target
            result["target_met"] = result["ratio_best"] >= target
        result["overhead_us_per_task"] = (1 / result["best_tasks_per_s"] - 1 / base["best_tasks_per_s"]) * 1e6


# -------------------------------------------------------------------- memory


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def memory_submit(n: int) -> dict[str, Any]:
    pool = make_pool(DEFAULT_TIMEOUT)
    pool.pause()
    submit = pool.submit
    futures: list[concurrent.futures.Future[Any]] = []
    tracemalloc.start()
    try:
        before = _traced()
        futures.extend(submit(noop) for _ in range(n))
        after = _traced()
    finally:
        tracemalloc.stop()
    queued = pool.stats().queued
    pool.stop()
    rejected = sum(1 for f in futures if f.done() and f.exception() is not None)
    pool.shutdown(wait=True)
    if queued != n or rejected != n:
        raise RuntimeError(f"memory submit: {queued} queued, {rejected} rejected, expected {n}")
    return {"n": n, "bytes_total": after - before, "bytes_per_task": (after - before) / n}


def memory_future_baseline(n: int) -> dict[str, Any]:
    """A bare concurrent.futures.Future per task: what any submit() must return."""
    futures: list[concurrent.futures.Future[Any]] = []
    tracemalloc.start()
    try:
        before = _traced()
        futures.extend(concurrent.futures.Future() for _ in range(n))
        after = _traced()
    finally:
        tracemalloc.stop()
    return {"n": n, "bytes_total": after - before, "bytes_per_task": (after - before) / n}


def memory_executor_baseline(n: int) -> dict[str, Any]:
    """ThreadPoolExecutor(max_workers=1) whose worker is blocked: n queued work items."""
    gate = threading.Event()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    executor.submit(gate.wait)
    submit = executor.submit
    futures: list[concurrent.futures.Future[Any]] = []
    tracemalloc.start()
    try:
        before = _traced()
        futures.extend(submit(noop) for _ in range(n))
        after = _traced()
    finally:
        tracemalloc.stop()
    executor.shutdown(wait=False, cancel_futures=True)
    gate.set()
    executor.shutdown(wait=True)
    if len(futures) != n or not all(f.cancelled() for f in futures):
        raise RuntimeError("memory executor baseline: the queued work items were not all cancelled")
    return {"n": n, "bytes_total": after - before, "bytes_per_task": (after - before) / n}


async def _memory_async(n: int, kind: str) -> dict[str, Any]:
    pool = make_pool(DEFAULT_TIMEOUT)
    pool.pause()
    event = asyncio.Event()
    shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def admitted() -> None:
        async with pool.admit_async():
            pass

    async def on_event() -> None:
        await event.wait()

    async def on_shared() -> None:
        await shared

    factory: Callable[[], Any] = {
        "run": lambda: pool.run(anoop),
        "admit_async": admitted,
        "event": on_event,
        "shared_future": on_shared,
    }[kind]
    tasks: list[asyncio.Task[Any]] = []
    tracemalloc.start()
    try:
        before = _traced()
        tasks.extend(asyncio.ensure_future(factory()) for _ in range(n))
        for _ in range(3):  # let every task run up to its first real wait
            await asyncio.sleep(0)
        after = _traced()
    finally:
        tracemalloc.stop()
    queued = pool.stats().queued
    pool.stop()
    event.set()
    shared.set_result(None)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    pool.shutdown(wait=True)
    if kind in ("run", "admit_async"):
        failed = sum(1 for o in outcomes if isinstance(o, BaseException))
        if queued != n or failed != n:
            raise RuntimeError(f"memory {kind}: {queued} queued, {failed} rejected, expected {n}")
    return {"n": n, "bytes_total": after - before, "bytes_per_task": (after - before) / n}


def memory_async(n: int, kind: str) -> dict[str, Any]:
    settle()
    return asyncio.run(_memory_async(n, kind))


def run_memory(n: int) -> dict[str, dict[str, Any]]:
    # The automatic collector is off here: with 100,000 live tasks its full
    # collections dominate the run time. Every figure is taken after an
    # explicit gc.collect(), so the numbers do not change.
    settle()
    gc.disable()
    try:
        return _run_memory(n)
    finally:
        gc.enable()


def _run_memory(n: int) -> dict[str, dict[str, Any]]:
    # Baselines hold plain stdlib objects whose size per task does not depend
    # on how many there are: a smaller count keeps the run short.
    base_n = min(n, 20_000)
    results = {
        "pool.submit (paused)": memory_submit(n),
        "ThreadPoolExecutor queued (baseline)": memory_executor_baseline(base_n),
        "concurrent.futures.Future alone (baseline)": memory_future_baseline(base_n),
        "pool.run task (paused)": memory_async(n, "run"),
        "pool.admit_async task (paused)": memory_async(n, "admit_async"),
        "asyncio task awaiting Event (baseline)": memory_async(base_n, "event"),
        "asyncio task awaiting shared future (baseline)": memory_async(base_n, "shared_future"),
    }
    submit = results["pool.submit (paused)"]
    submit["target"] = MEMORY_TARGET
    submit["target_met"] = submit["bytes_per_task"] <= MEMORY_TARGET
    submit["bytes_over_future_baseline"] = (
        submit["bytes_per_task"] - results["concurrent.futures.Future alone (baseline)"]["bytes_per_task"]
    )
    event = results["asyncio task awaiting Event (baseline)"]["bytes_per_task"]
    for key in ("pool.run task (paused)", "pool.admit_async task (paused)"):
        results[key]["bytes_over_event_baseline"] = results[key]["bytes_per_task"] - event
    return results


# ------------------------------------------------------------------- report


def _fmt_rate(value: float) -> str:
    return f"{value:>12,.0f}"


def print_throughput(title: str, results: dict[str, dict[str, Any]]) -> None:
    print(f"\n{title}")
    header = (
        f"  {'variant':<40} {'best tasks/s':>12} {'median/s':>12} {'ratio(best)':>11} "
        f"{'ratio(med)':>10} {'+us/task':>9} {'threads':>7}  target"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for name, r in results.items():
        ratio = f"{r['ratio_best']:>11.2f}" if "ratio_best" in r else f"{'1.00':>11}"
        paired = f"{r['ratio_median_paired']:>10.2f}" if "ratio_median_paired" in r else f"{'':>10}"
        overhead = f"{r['overhead_us_per_task']:>9.1f}" if r["overhead_us_per_task"] is not None else f"{'':>9}"
        threads = [i["threads"] for i in r["info"] if "threads" in i]
        thread_text = f"{max(threads):>7}" if threads else f"{'':>7}"
        target = ""
        if "target" in r:
            target = f"{'MET' if r['target_met'] else 'MISSED'} (>= {r['target']})"
        print(
            f"  {name:<40} {_fmt_rate(r['best_tasks_per_s'])} {_fmt_rate(r['median_tasks_per_s'])} "
            f"{ratio} {paired} {overhead} {thread_text}  {target}"
        )


def print_memory(results: dict[str, dict[str, Any]]) -> None:
    print("\nMemory per queued task (tracemalloc, pool paused)")
    header = f"  {'what':<48} {'queued':>8} {'bytes/task':>10} {'total KiB':>10}  note"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for name, r in results.items():
        note = ""
        if "target" in r:
            note = f"{'MET' if r['target_met'] else 'MISSED'} (<= {r['target']} B)"
            note += f"; {r['bytes_over_future_baseline']:+.0f} B over a bare Future"
        if "bytes_over_event_baseline" in r:
            note = f"{r['bytes_over_event_baseline']:+.0f} B vs the Event baseline"
        print(f"  {name:<48} {r['n']:>8,} {r['bytes_per_task']:>10.0f} {r['bytes_total'] / 1024:>10.0f}  {note}")
    print("  (sync admission, pool.acquire/admit, blocks one thread per waiter: not measured at this scale)")


def environment() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": load,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N and fewer rounds (about 15 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--rounds", type=int, help="rounds per throughput benchmark (default 5, quick 3)")
    parser.add_argument("-n", type=int, help="tasks per throughput run (default 50,000, quick 5,000)")
    parser.add_argument("--memory-n", type=int, help="queued tasks for the memory runs (default 100,000, quick 20,000)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    n = args.n or (5_000 if args.quick else 50_000)
    rounds = args.rounds or (3 if args.quick else 5)
    memory_n = args.memory_n or (20_000 if args.quick else 100_000)

    env = environment()
    print("s3pool_plugins core benchmark")
    print(
        f"  python {env['python']} ({env['implementation']}), {env['platform']}, "
        f"cpu_count={env['cpu_count']} usable={env['usable_cpus']}, loadavg={env['loadavg']}"
    )
    print(
        f"  concurrency C={CONCURRENCY}, N={n:,}, rounds={rounds}, memory N={memory_n:,}{' (quick)' if args.quick else ''}"
    )
    started = time.perf_counter()

    async_results = run_rounds(
        [
            ("asyncio.Semaphore + gather (baseline)", async_baseline),
            ("pool.run, timeout=None", async_pool_no_timeout),
            ("pool.run, default timeout (30 s)", async_pool_default_timeout),
        ],
        n,
        rounds,
    )
    add_ratios(async_results, "asyncio.Semaphore + gather (baseline)", ASYNC_TARGET)
    print_throughput(f"1. Async no-op throughput (N={n:,}, C={CONCURRENCY})", async_results)

    # A no-op never suspends, so no pool.run ever waits for a slot above; this
    # informational run makes every task yield once so that the queue path
    # (LoopWaiter, grant on release) is exercised too. No target.
    yield_n = max(1, n // 2)
    yield_results = run_rounds(
        [
            ("Semaphore + gather, yield once (baseline)", async_yield_baseline),
            ("pool.run, yield once, timeout=None", async_yield_pool_no_timeout),
            ("pool.run, yield once, default timeout", async_yield_pool_default_timeout),
        ],
        yield_n,
        max(1, min(rounds, 3)),
    )
    add_ratios(yield_results, "Semaphore + gather, yield once (baseline)", None)
    print_throughput(
        f"1b. Async, each task yields once: queue path (informational, N={yield_n:,}, C={CONCURRENCY})",
        yield_results,
    )

    sync_results = run_rounds(
        [
            ("ThreadPoolExecutor (baseline)", sync_baseline),
            ("pool.submit, timeout=None", sync_pool_no_timeout),
            ("pool.submit, default timeout (30 s)", sync_pool_default_timeout),
        ],
        n,
        rounds,
    )
    add_ratios(sync_results, "ThreadPoolExecutor (baseline)", SYNC_TARGET)
    print_throughput(f"2. Sync no-op throughput (N={n:,}, C={CONCURRENCY})", sync_results)

    memory_results = run_memory(memory_n)
    print_memory(memory_results)

    elapsed = time.perf_counter() - started
    env["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    targets = {
        **{f"async: {k}": v["target_met"] for k, v in async_results.items() if "target_met" in v},
        **{f"sync: {k}": v["target_met"] for k, v in sync_results.items() if "target_met" in v},
        "memory: pool.submit": memory_results["pool.submit (paused)"]["target_met"],
    }
    print(f"\nTargets (ratios judged on best rounds): {sum(targets.values())} of {len(targets)} met")
    for name, met in targets.items():
        print(f"  {'MET   ' if met else 'MISSED'} {name}")
    print(f"\nTotal time {elapsed:.1f} s")

    if args.json:
        report = {
            "environment": env,
            "settings": {
                "quick": args.quick,
                "n": n,
                "rounds": rounds,
                "memory_n": memory_n,
                "concurrency": CONCURRENCY,
            },
            "async": async_results,
            "async_yield_once": yield_results,
            "sync": sync_results,
            "memory": memory_results,
            "targets": targets,
            "elapsed_s": elapsed,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"Wrote {args.json}")
    return 1 if args.strict and not all(targets.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
