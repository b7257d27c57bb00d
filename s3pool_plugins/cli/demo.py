"""``s3pool demo``: the same S3 workload without and with the pool, on a local, throttled S3.

Starts :class:`~s3pool_plugins.testing.LocalS3` (moto) behind a
:class:`~s3pool_plugins.testing.ChaosProxy` with realistic latency and a
token-bucket write limit on one prefix (S3's per-prefix throttling: 503
``SlowDown`` beyond it), runs the workload of :mod:`.workload` twice, once
with boto3 and s3fs as they come and once with the pool installed, shows
progress on stderr, then prints a comparison table and what the figures
say, and writes an HTML chart of the runs. Every figure is measured in this
run; the verdict is computed from them, whichever way they fall.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import chart
from . import parser as types
from .progress import ProgressLine
from .summary import count, seconds, table
from .workload import PARQUET_PRIORITY, RunResult, Sample, Scenario, run_workload

DEFAULT_CHART = "s3pool-demo.html"
QUICK = {"objects": 400, "parquet_rows": 20_000}
"""What ``--quick`` changes (``--objects`` still wins)."""

MAX_OBJECTS = 1_000_000
"""The most uploads a run takes (the workload queues them all at its start)."""
MAX_PARQUET_ROWS = 10_000_000
"""The largest DataFrame of the Parquet round trip (built in memory)."""

NEEDS = ("boto3", "moto", "pandas", "pyarrow", "s3fs", "aiobotocore")
PLAIN, POOLED = "boto3 defaults", "with s3pool"


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``demo`` to the sub-command parsers ``commands``."""
    defaults = Scenario()
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        help="see the pool at work on a local, throttled S3 (nothing to configure)",
        description=(
            "Start a local S3 (moto) behind a fault proxy with realistic latency and a throttled prefix, run the "
            "same workload (boto3 uploads from threads and a pandas Parquet round trip through s3fs) once as it "
            "comes and once with the pool installed, then compare them in a table and an HTML chart."
        ),
    )
    parser.add_argument(
        "--objects",
        type=types.integer(1, MAX_OBJECTS),
        metavar="N",
        help=types.with_default(
            "objects to upload in each run", f"{defaults.objects}; {QUICK['objects']} with --quick"
        ),
    )
    parser.add_argument(
        "--quick", action="store_true", help=types.with_default("a smaller workload: about 20 seconds in all", "off")
    )
    parser.add_argument(
        "--threads",
        type=types.integer(1, types.MAX_THREADS),
        default=defaults.threads,
        metavar="N",
        help=types.with_default("upload threads (both runs)", defaults.threads),
    )
    parser.add_argument(
        "--concurrency",
        type=types.concurrency,
        default=defaults.concurrency,
        metavar="N|auto",
        help=types.with_default(
            "the pool's limit in the pooled run", f"{defaults.concurrency}: adaptive, one state per key prefix"
        ),
    )
    parser.add_argument(
        "--rate",
        type=types.per_second(),
        default=defaults.hot_writes_per_second,
        metavar="PER_SECOND",
        help=types.with_default("writes per second the throttled prefix allows", f"{defaults.hot_writes_per_second:g}"),
    )
    parser.add_argument("--seed", type=types.integer(0), default=defaults.seed, help=argparse.SUPPRESS)
    parser.add_argument("--parquet-rows", type=types.integer(1, MAX_PARQUET_ROWS), default=None, help=argparse.SUPPRESS)
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--chart",
        type=Path,
        default=Path(DEFAULT_CHART),
        metavar="PATH",
        help=types.with_default("where to write the HTML chart", DEFAULT_CHART),
    )
    output.add_argument("--no-chart", action="store_true", help=types.with_default("write no chart", "off"))
    parser.set_defaults(execute=execute, command_parser=parser)
    return parser


def scenario_from(args: argparse.Namespace) -> Scenario:
    """The :class:`Scenario` the options describe."""
    base = Scenario()
    objects = args.objects if args.objects is not None else (QUICK["objects"] if args.quick else base.objects)
    rows = args.parquet_rows if args.parquet_rows is not None else (QUICK["parquet_rows"] if args.quick else None)
    return replace(
        base,
        objects=objects,
        threads=args.threads,
        concurrency=args.concurrency,
        hot_writes_per_second=args.rate,
        seed=args.seed,
        parquet_rows=rows if rows is not None else base.parquet_rows,
    )


def missing_dependencies() -> list[str]:
    """The demo's dependencies that are not installed."""
    return [name for name in NEEDS if importlib.util.find_spec(name) is None]


def prepare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Scenario, Path | None]:
    """Every check that starts nothing: the scenario and where the chart goes. ``parser.error`` on a problem."""
    chart_path: Path | None = None if args.no_chart else args.chart
    if chart_path is not None:
        types.check_output_file(parser, "--chart", chart_path)
    return scenario_from(args), chart_path


def execute(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Check, run both workloads, print the table and the verdict, write the chart."""
    scenario, chart_path = prepare(args, parser)
    missing = missing_dependencies()
    if missing:
        print(
            f"s3pool demo needs the demo extra: python -m pip install 's3pool-plugins[demo]' "
            f"(missing: {', '.join(missing)})",
            file=sys.stderr,
        )
        return 1
    print("\n".join(describe(scenario)), flush=True)
    progress = ProgressLine()
    results = run_both(scenario, progress)
    print()
    print(table(*comparison(results, scenario)))
    print()
    print("\n".join(verdict(results[0], results[1], scenario)))
    if chart_path is not None:
        chart_path.write_text(render_chart(results, scenario), encoding="utf-8")
        print(f"\nChart: {chart_path} (open it in a browser; it needs no network)")
    return 0


def introduction(scenario: Scenario) -> list[chart.Block]:
    """What the demo is about to do: two paragraphs and a list of the two runs (code between backticks)."""
    options = ", ".join(
        f"{name}={value:g}" if isinstance(value, (int, float)) else f"{name}={value!r}"
        for name, value in scenario.pool_options().items()
    )
    return [
        f"s3pool demo: a local S3 (moto) behind a fault proxy that adds latency (median {seconds(scenario.latency)}, "
        f"with a tail) and lets the prefix `hot/` take {scenario.hot_writes_per_second:g} writes per second "
        "(503 SlowDown beyond).",
        f"Workload: {count(scenario.objects)} uploads of {count(scenario.object_size)} bytes from {scenario.threads} "
        f"threads, every {_ordinal(scenario.hot_every)} to `hot/`, while a pandas DataFrame of "
        f"{count(scenario.parquet_rows)} rows makes a Parquet round trip through s3fs.",
        [
            f"run 1, {PLAIN}: boto3 and s3fs as they come (botocore's legacy retries: 5 attempts)",
            f"run 2, {POOLED}: the same code after `install(session, OperationsPool({options}))`; the Parquet calls "
            f"at priority {PARQUET_PRIORITY} (`install(aio_session, pool, priorities=...)`)",
        ],
    ]


def describe(scenario: Scenario, width: int = 110) -> list[str]:
    """:func:`introduction` as terminal lines: paragraphs wrapped, list items indented."""
    lines: list[str] = []
    for block in introduction(scenario):
        if isinstance(block, str):
            lines.extend(textwrap.wrap(block.replace("`", ""), width))
            continue
        for item in block:
            lines.extend(textwrap.wrap(item.replace("`", ""), width, initial_indent="  ", subsequent_indent="    "))
    return lines


def _ordinal(n: int) -> str:
    if n == 1:
        return "one"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def run_both(scenario: Scenario, progress: ProgressLine) -> list[RunResult]:
    """Start the server and the proxy, warm them up, and run the workload plain, then pooled."""
    from ..testing import ChaosProxy, LocalS3

    progress.update("starting a local S3 and the fault proxy ...", force=True)
    with (
        _without_aws_configuration(),
        LocalS3() as server,
        ChaosProxy(server.endpoint_url, seed=scenario.seed) as proxy,
    ):
        warm_up(server, proxy)
        results = []
        for label, pooled in ((PLAIN, False), (POOLED, True)):
            begun = time.monotonic()

            def show(result: RunResult, point: Sample) -> None:
                progress.update(
                    f"{result.label}: {count(point.stored)}/{count(result.objects)} stored, "
                    f"{count(point.failed)} failed, {count(point.throttled)} 503s, {point.elapsed:.1f} s"
                )

            result = run_workload(server, proxy, scenario, pooled=pooled, label=label, on_sample=show)
            progress.done(
                f"{label}: {count(result.stored)}/{count(result.objects)} stored, {count(result.failed)} failed, "
                f"{count(result.throttled)} 503s, {time.monotonic() - begun:.1f} s"
            )
            results.append(result)
    return results


@contextmanager
def _without_aws_configuration() -> Iterator[None]:
    """While the demo runs, no ``AWS_*`` variable, profile, config file or instance metadata of the user applies.

    Both runs must see botocore's defaults and only the local S3: a profile
    that does not exist, a retry mode, or botocore's plugin variable (the
    demo run under ``s3pool run``) would change or break the comparison.
    """
    names = [name for name in os.environ if name.upper().startswith("AWS_") or name == "BOTOCORE_EXPERIMENTAL__PLUGINS"]
    saved = {name: os.environ.pop(name) for name in names}
    isolation = {
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    os.environ.update(isolation)
    try:
        yield
    finally:
        for name in isolation:
            os.environ.pop(name, None)
        os.environ.update(saved)


def warm_up(server: Any, proxy: Any) -> None:
    """A few unmeasured requests through the proxy and s3fs, so neither run pays for first-use costs."""
    from .workload import Scenario as _Scenario
    from .workload import run_workload as _run

    _run(server, proxy, _Scenario(objects=8, threads=4, parquet_rows=100, hot_every=2), pooled=False, label="warm-up")


def comparison(results: Sequence[RunResult], scenario: Scenario) -> tuple[list[str], list[list[str]]]:
    """The comparison table: headers and rows of text, one column per run."""

    def row(name: str, values: Sequence[str]) -> list[str]:
        return [name, *values]

    def parquet(result: RunResult) -> str:
        return seconds(result.parquet_time) if result.parquet_error is None else "failed"

    def share(result: RunResult) -> str:
        percent = 100.0 * result.throttled / result.requests if result.requests else 0.0
        return f"{count(result.throttled)} ({percent:.1f}%)"

    headers = ["", *(result.label for result in results)]
    rows = [
        row("wall time", [seconds(r.wall_time) for r in results]),
        row("objects stored", [f"{count(r.stored)} of {count(r.objects)}" for r in results]),
        row("objects per second", [f"{r.objects_per_second:.0f}" for r in results]),
        row(
            f"hot/ writes per second (limit {scenario.hot_writes_per_second:g})",
            [f"{r.hot_writes_per_second:.1f}" for r in results],
        ),
        row("503 SlowDown seen at the proxy", [share(r) for r in results]),
        row("attempts per upload", [f"{r.attempts_per_upload:.2f}" for r in results]),
        row("failed calls", [count(r.failed + (r.parquet_error is not None)) for r in results]),
        row("upload call time p95", [seconds(r.call_time(0.95)) for r in results]),
        row("Parquet round trip", [parquet(r) for r in results]),
        row("peak requests in flight", [count(r.in_flight_peak) for r in results]),
    ]
    return headers, rows


def _ratio(better: float, worse: float) -> str:
    return f"{better / worse:.1f}x" if worse > 0 else "-"


def verdict(plain: RunResult, pooled: RunResult, scenario: Scenario) -> list[str]:
    """What the measured figures say, line by line, whichever way they fall (+ better, - worse, = about even)."""
    lines = ["What this run measured:"]
    plain_failed = plain.failed + (plain.parquet_error is not None)
    pooled_failed = pooled.failed + (pooled.parquet_error is not None)
    if pooled_failed < plain_failed:
        lines.append(
            f"+ {pooled_failed} calls failed with the pool, {plain_failed} with boto3's defaults "
            "(botocore gives up after 5 attempts; the pool retried up to "
            f"{scenario.retries + 1} times, within its retry budget)."
        )
    elif pooled_failed > plain_failed:
        lines.append(
            f"- {pooled_failed} calls failed with the pool, {plain_failed} with boto3's defaults: "
            "its retries or its retry budget ran out under this throttling."
        )
    else:
        lines.append(f"= {pooled_failed} failed calls in both runs.")
    lines.append(_compare("the uploads took", plain.upload_time, pooled.upload_time, lower_is_better=True))
    if plain.parquet_time is not None and pooled.parquet_time is not None:
        lines.append(
            _compare("the Parquet round trip took", plain.parquet_time, pooled.parquet_time, lower_is_better=True)
            + (" Its calls ran at priority 10, ahead of the queued uploads." if pooled.parquet_time else "")
        )
    throttles = _compare("the proxy answered 503 SlowDown", plain.throttled, pooled.throttled, lower_is_better=True)
    lines.append(throttles)
    if pooled.throttled > plain.throttled * 1.1 and scenario.concurrency != "auto":
        lines.append(
            "  A fixed limit cannot slow down for one throttled prefix: the pool keeps retrying where botocore gives "
            f"up (up to {scenario.retries + 1} attempts, backoff capped at {scenario.max_retry_delay:g} s), so hot/ "
            "gets more requests and answers more of them with 503. "
            "With --concurrency auto the pool paces hot/ at its rate."
        )
    lines.append(
        f"  hot/ stored {pooled.hot_writes_per_second:.1f} writes/s with the pool, "
        f"{plain.hot_writes_per_second:.1f} without, of the {scenario.hot_writes_per_second:g}/s it allows."
    )
    if scenario.concurrency == "auto":
        lines.append(
            "The pool ran on concurrency='auto' with one adaptive state per key prefix: at the first 503s it paced "
            "hot/ at the rate hot/ accepted, while the other prefix went on at full speed."
        )
    lines.append("Figures vary from run to run: run it again to see.")
    return lines


def _compare(what: str, plain: float, pooled: float, *, lower_is_better: bool) -> str:
    """One verdict line: + when the pool is better by more than 10%, - when worse by as much, = otherwise."""
    is_count = isinstance(plain, int) and isinstance(pooled, int)

    def show(value: float) -> str:
        return count(int(value)) if is_count else seconds(value)

    text = f"{what} {show(pooled)} with the pool, {show(plain)} with boto3's defaults"
    if plain == pooled or (max(plain, pooled) > 0 and abs(plain - pooled) <= 0.1 * max(plain, pooled)):
        return f"= {text} (about even)."
    better = pooled < plain if lower_is_better else pooled > plain
    if lower_is_better:
        factor = _ratio(plain, pooled) if better else _ratio(pooled, plain)
    else:
        factor = _ratio(pooled, plain) if better else _ratio(plain, pooled)
    return f"{'+' if better else '-'} {text} ({factor} {'better' if better else 'worse'})."


def rates(samples: Sequence[Sample], value: str, window: float = 1.0) -> list[tuple[float, float | None]]:
    """Per-second rate of the cumulative counter ``value`` of ``samples``, over a trailing ``window`` (seconds)."""
    points: list[tuple[float, float | None]] = []
    start = 0
    for index, sample in enumerate(samples):
        while start < index and samples[start].elapsed < sample.elapsed - window - 1e-9:
            start += 1
        first = samples[start]
        span = sample.elapsed - first.elapsed
        rate = (getattr(sample, value) - getattr(first, value)) / span if span > 0 else 0.0
        points.append((sample.elapsed, rate))
    return points


PARTITION_COLORS = ("#1a7f37", "#8250df", "#bf8700", "#cf222e", "#0550ae")
"""Colours of the pool's partitions (key prefixes) in the charts, in order of appearance."""


def paced_partitions(samples: Sequence[Sample]) -> list[str]:
    """The partitions (key prefixes) that the pool paced at some point of a run, in order of first pacing."""
    seen: dict[str, None] = {}
    for sample in samples:
        for name, (_, rate) in sample.partitions.items():
            if rate is not None:
                seen.setdefault(name)
    return list(seen)


def pacing_series(result: RunResult, color_of: dict[str, str]) -> list[chart.Series]:
    """One dashed line per paced partition: its pacing rate over time (gaps while unpaced)."""
    return [
        chart.Series(
            f"{result.label}: pacing of {name}",
            [(s.elapsed, s.partitions[name][1] if name in s.partitions else None) for s in result.samples],
            color_of[name],
            dashed=True,
        )
        for name in paced_partitions(result.samples)
    ]


def limit_series(result: RunResult, color_of: dict[str, str]) -> list[chart.Series]:
    """What limits the pooled run's concurrency: each partition's adaptive limit, or else the pool's limit."""
    names = list(dict.fromkeys(name for s in result.samples for name in s.partitions))
    if not names:
        limits = [(s.elapsed, None if s.limit is None else float(s.limit)) for s in result.samples]
        return [chart.Series(f"{result.label}: pool limit", limits, PARTITION_COLORS[0], dashed=True)]
    return [
        chart.Series(
            f"{result.label}: limit of {name}",
            [(s.elapsed, float(s.partitions[name][0]) if name in s.partitions else None) for s in result.samples],
            color_of[name],
            dashed=True,
        )
        for name in names
    ]


def render_chart(results: Sequence[RunResult], scenario: Scenario) -> str:
    """The HTML page: the introduction, the table, then what was stored, throttled and what bound each run."""
    colors = {PLAIN: "#bc4c00", POOLED: "#0969da"}
    x_max = max((r.samples[-1].elapsed for r in results if r.samples), default=1.0)
    names = list(dict.fromkeys(name for r in results for s in r.samples for name in s.partitions))
    color_of = {name: PARTITION_COLORS[i % len(PARTITION_COLORS)] for i, name in enumerate(names)}
    throughput = [chart.Series(r.label, rates(r.samples, "stored"), colors.get(r.label, "#57606a")) for r in results]
    throttled = [chart.Series(r.label, rates(r.samples, "throttled"), colors.get(r.label, "#57606a")) for r in results]
    allowed = chart.Series(
        f"hot/ allows {scenario.hot_writes_per_second:g}/s",
        [(0.0, scenario.hot_writes_per_second), (x_max, scenario.hot_writes_per_second)],
        "#8c959f",
        dashed=True,
    )
    hot = [
        chart.Series(f"{r.label}: stored in hot/", rates(r.samples, "hot_stored"), colors.get(r.label, "#57606a"))
        for r in results
    ]
    hot += [allowed, *(line for r in results if r.pooled for line in pacing_series(r, color_of))]
    concurrency = [
        chart.Series(
            f"{r.label}: in flight",
            [(s.elapsed, float(s.in_flight)) for s in r.samples],
            colors.get(r.label, "#57606a"),
        )
        for r in results
    ]
    concurrency += [line for r in results if r.pooled for line in limit_series(r, color_of)]
    charts = [
        chart.line_chart(
            "Objects stored per second", throughput, x_label="seconds into the run", y_label="objects/s", x_max=x_max
        ),
        chart.line_chart(
            "hot/: writes stored per second, what the prefix allows, and the pool's pacing of it",
            hot,
            x_label="seconds into the run",
            y_label="writes/s",
            x_max=x_max,
        ),
        chart.line_chart(
            "503 SlowDown per second (at the proxy)",
            throttled,
            x_label="seconds into the run",
            y_label="503s/s",
            x_max=x_max,
        ),
        chart.line_chart(
            "Concurrency: requests in flight at the proxy, and the pool's limits",
            concurrency,
            x_label="seconds into the run",
            y_label="requests",
            x_max=x_max,
        ),
    ]
    headers, rows = comparison(results, scenario)
    return chart.page(
        "s3pool demo",
        intro=introduction(scenario),
        table=chart.html_table(headers, rows),
        charts=charts,
        notes=[
            *verdict_blocks(verdict(results[0], results[1], scenario)),
            _what_binds(results),
            f"Measured {time.strftime('%Y-%m-%d %H:%M:%S')} with Python {sys.version.split()[0]}: counters sampled "
            "every 0.25 s (objects from the workload, requests, 503s and requests in flight from the proxy, the "
            "limits and pacing rates from the pool); rates over a trailing second.",
        ],
    )


def verdict_blocks(lines: Sequence[str]) -> list[chart.Block]:
    """The verdict's lines for HTML: its heading, then its points as a list (an indented line continues a point)."""
    heading, *rest = lines
    points: list[str] = []
    for line in rest:
        if line.startswith("  ") and points:
            points[-1] += " " + line.strip()
        else:
            points.append(line)
    return [heading, points]


def _what_binds(results: Sequence[RunResult]) -> str:
    """A note on what held the pooled run back, from what the pool reported."""
    paced = [name for r in results if r.pooled for name in paced_partitions(r.samples)]
    if paced:
        return (
            f"What held the pool back: its pacing of {', '.join(f'`{name}`' for name in paced)} (dashed in the "
            "hot/ chart), the rate it found the prefix accepts; the limits in the concurrency chart are per "
            "prefix, so the other prefixes were not slowed down."
        )
    return "The pool paced no prefix in this run: its limit (dashed in the concurrency chart) is what bound it."
