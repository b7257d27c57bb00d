"""What monitoring costs: no-op task throughput with monitoring off, light and full.

Run from the repository root::

    python benchmarks/bench_metrics.py            # full run (about 1-2 minutes)
    python benchmarks/bench_metrics.py --quick    # smoke run (about 20 s)
    python benchmarks/bench_metrics.py --json out.json --strict

The workload is the worst case for monitoring: tasks that do nothing, so
that the recording is a large share of each task's cost (a real S3 call
takes milliseconds and hides it completely). Each mode runs the same N
tasks through a pool of concurrency C, sync (``submit``) and async (``run``),
with ``monitoring="off"`` as the baseline measured in the same rounds; the
order of the variants alternates each round and the best round counts (see
``bench_core.py`` for the method).

Variants: monitoring off (the baseline), light, full; light with the
plugin autoloading on, as for any user, with no OpenTelemetry SDK configured
(``light+otel-inert``: the built-in plugin declines to be registered);
full with the plugin and the OpenTelemetry SDK making a span per task and
recording the metric instruments (``full+otel-sdk``; spans go through a
BatchSpanProcessor to an exporter that discards them).

Targets: light costs at most 5% of the no-op throughput
(ratio >= 0.95); the inert plugin costs nothing measurable (within 2% of
light); full with spans costs at most 15% (ratio >= 0.85).

The light and inert targets are judged on the median of the per-round
paired ratios (each round runs every variant back to back), not on the best
rounds as in ``bench_core.py``: a cost of a few percent is below the
round-to-round noise of sync no-op tasks on a shared machine (light and
light+otel-inert run the very same code, yet their best-round ratios
differed by up to 0.12 between runs), and the paired median is the robust
estimate of it. Both figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
core = importlib.import_module("bench_core")

CONCURRENCY = core.CONCURRENCY
LIGHT_TARGET = 0.95
FULL_WITH_SPANS_TARGET = 0.85


_OTEL: dict[str, Any] = {}


def _otel_plugin(with_sdk: bool) -> Any:
    """The OpenTelemetry plugin with SDK providers that export through a BatchSpanProcessor to an
    exporter that discards (the cost of making spans, not of shipping them)."""
    from s3pool_plugins.adapters.otel import OpenTelemetryPlugin

    if "providers" not in _OTEL:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

        class Discard(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=65536))
        _OTEL["providers"] = (tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
    tracer_provider, meter_provider = _OTEL["providers"]
    return OpenTelemetryPlugin(tracer_provider, meter_provider)


def _pool(monitoring: str) -> Any:
    mode, _, otel = monitoring.partition("+")
    plugins = [_otel_plugin(with_sdk=True)] if otel == "otel-sdk" else []
    # "otel-inert": plugin autoloading on, as for any user, with no SDK configured (the plugin declines).
    return core.OperationsPool(
        load_entrypoints=otel == "otel-inert",
        monitoring=mode,
        concurrency=CONCURRENCY,
        timeout=None,
        name="bench",
        plugins=plugins,
    )


def _sync(monitoring: str) -> Any:
    def run(n: int, info: dict[str, Any]) -> float:
        core.settle()
        pool = _pool(monitoring)
        pool.submit(core.noop).result()
        started = time.perf_counter()
        futures = [pool.submit(core.noop) for _ in range(n)]
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - started
        pool.shutdown()
        info.update(core.check_pool(pool, n + 1, f"sync {monitoring}"))
        return elapsed

    return run


def _async(monitoring: str) -> Any:
    def run(n: int, info: dict[str, Any]) -> float:
        core.settle()

        async def main() -> float:
            pool = _pool(monitoring)
            started = time.perf_counter()
            await asyncio.gather(*(pool.run(core.anoop) for _ in range(n)))
            elapsed = time.perf_counter() - started
            pool.shutdown()
            info.update(core.check_pool(pool, n, f"async {monitoring}"))
            return elapsed

        return asyncio.run(main())

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N and fewer rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--rounds", type=int, help="rounds per benchmark (default 15, quick 3)")
    parser.add_argument("-n", type=int, help="tasks per run (default 30,000, quick 5,000)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    n = args.n or (5_000 if args.quick else 30_000)
    rounds = args.rounds or (3 if args.quick else 15)

    env = core.environment()
    print("s3pool_plugins monitoring benchmark")
    print(f"  python {env['python']}, cpu_count={env['cpu_count']}, loadavg={env['loadavg']}, N={n:,}, rounds={rounds}")
    results: dict[str, Any] = {"environment": env, "n": n, "rounds": rounds}
    met: dict[str, bool] = {}
    for label, factory, baseline in (
        ("sync submit", _sync, "sync, monitoring off"),
        ("async run", _async, "async, monitoring off"),
    ):
        prefix = baseline.split(",")[0]
        modes = ("off", "light", "full", "light+otel-inert", "full+otel-sdk")
        variants = [(f"{prefix}, monitoring {mode}", factory(mode)) for mode in modes]
        measured = core.run_rounds(variants, n, rounds)
        core.add_ratios(measured, baseline, None)
        light = measured[f"{prefix}, monitoring light"]
        light["target"] = LIGHT_TARGET
        light["target_met"] = light["ratio_median_paired"] >= LIGHT_TARGET
        met[f"{label}: light"] = light["target_met"]
        inert = measured[f"{prefix}, monitoring light+otel-inert"]
        inert["target"] = LIGHT_TARGET
        inert["target_met"] = inert["ratio_median_paired"] / light["ratio_median_paired"] >= 0.98
        met[f"{label}: OpenTelemetry plugin without an SDK (within 2% of light)"] = inert["target_met"]
        spans = measured[f"{prefix}, monitoring full+otel-sdk"]
        spans["target"] = FULL_WITH_SPANS_TARGET
        spans["target_met"] = spans["ratio_best"] >= FULL_WITH_SPANS_TARGET
        met[f"{label}: full with spans"] = spans["target_met"]
        core.print_throughput(f"{label}: no-op tasks, C={CONCURRENCY}", measured)
        results[label] = measured
    results["targets_met"] = met
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    missed = [name for name, ok in met.items() if not ok]
    print(f"\ntargets: {'all met' if not missed else 'missed: ' + ', '.join(missed)}")
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
