"""``s3pool bench``: seeded, reproducible scenarios; each competitor measured in the same run.

Scenarios (:mod:`.scenarios`): a prefix throttled at R requests/s, high
latency without a rate limit, a capacity drop and recovery, two tenants
with weights 1:3; in company: 2% and 20% of requests answered 503 at random
(no rate limit), the throttled prefix plus 5% random 503s, and a short job
of PUTs measured whole. Competitors (:mod:`.competitors`): boto3 with standard
retries, boto3's adaptive retry mode, s3fs, the pool with a fixed limit, the
pool on auto. One run (:mod:`.runner`) per scenario and competitor, against
a local S3 behind a fresh, seeded fault proxy; a table per scenario and a
JSON document (:mod:`.report`) from the figures (:mod:`.measures`).

Every argument is checked before anything starts: a bad one gets argparse's
usage message naming it and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...core.terminal_log import keep_warnings_off_the_status_line
from .. import parser as types
from ..progress import ProgressLine
from .competitors import COMPETITORS, variants
from .hedged import duration as hedged_duration
from .hedged import run_hedged_reads
from .hedged import table as hedged_table
from .measures import goodput, throttled_share
from .report import document, tables
from .runner import RunRecord, run_one
from .scenarios import HIGH_LATENCY_WORKERS, SCENARIOS, Plan, Settings, duration_of, plan

NEEDS = ("boto3", "moto", "s3fs", "aiobotocore")
MIN_DURATION = 3.0
QUICK_WARMUP = 1.0
MAX_JOB = 1_000_000
DEFAULTS = Settings()
HEDGED_READS = "hedged-reads"
"""A scenario of its own kind (:mod:`.hedged`): the pool with and without hedged reads, not the competitors."""
SCENARIO_NAMES = [*SCENARIOS, HEDGED_READS]


def milliseconds(text: str) -> float:
    """An option type: a number of milliseconds >= 0 (at most a year); returns seconds."""
    return _MILLISECONDS(text) / 1000


_MILLISECONDS = types.bounded(
    "milliseconds", "a number of milliseconds", allow_zero=True, maximum=types.MAX_SECONDS * 1000
)


def duration(text: str) -> float:
    """An option type: seconds per run, at least :data:`MIN_DURATION`."""
    try:
        value = types.seconds()(text)
    except argparse.ArgumentTypeError:
        value = -1.0
    if value < MIN_DURATION:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds >= {MIN_DURATION:g} and <= {types.figure(types.MAX_SECONDS)}, "
            f"got {types.shown(text)}"
        )
    return value


def limits(text: str) -> tuple[int, ...]:
    """An option type: comma-separated fixed limits (ints >= 1), e.g. ``4,16,64``."""
    accepted = "comma-separated integers >= 1 such as 4,16,64"
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected {accepted}, got {types.shown(text)}")
    try:
        values = tuple(types.integer(1)(part) for part in parts)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected {accepted}, got {types.shown(text)}") from None
    return tuple(sorted(set(values)))


def _scenario_durations(*, quick: bool) -> str:
    """The default seconds per run, scenario by scenario, for a help text (``30, capacity-drop 60``)."""
    lengths = {name: (s.quick_duration if quick else s.default_duration) for name, s in SCENARIOS.items() if not s.job}
    common = max(set(lengths.values()), key=list(lengths.values()).count)
    others = [f"{name} {length:g}" for name, length in lengths.items() if length != common]
    return ", ".join([f"{common:g}", *others])


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to the sub-command parsers ``commands``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "bench",
        help="compare boto3, its adaptive retry mode, s3fs and the pool in seeded, reproducible scenarios",
        description=(
            "Run seeded scenarios against a local S3 behind a fault proxy: a prefix throttled at R requests/s, "
            "high latency without a rate limit, a capacity drop and recovery, two tenants with weights 1:3; "
            "in company: 2% and 20% of requests answered 503 at random without a rate limit, the throttled "
            "prefix plus 5% random 503s, and a short job of PUTs measured whole. "
            "Each competitor runs the same closed-loop workload (--workers threads making small GET and PUT "
            "calls); a table per scenario shows the measured figures against the targets set for the pool "
            "(met or missed)."
        ),
        epilog="Example: s3pool bench --scenario throttled --competitor boto3 --competitor pool-fixed --duration 20",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=SCENARIO_NAMES,
        metavar="NAME",
        help=types.with_default(f"a scenario to run, repeatable: {', '.join(SCENARIO_NAMES)}", "all"),
    )
    parser.add_argument(
        "--competitor",
        action="append",
        choices=list(COMPETITORS),
        metavar="NAME",
        help=types.with_default(f"a competitor to run, repeatable: {', '.join(COMPETITORS)}", "all"),
    )
    parser.add_argument(
        "--duration",
        type=duration,
        metavar="SECONDS",
        help=types.with_default(
            f"seconds per run, at least {MIN_DURATION:g} (the short job runs until its PUTs are done)",
            _scenario_durations(quick=False) + "; with --quick " + _scenario_durations(quick=True),
        ),
    )
    parser.add_argument(
        "--job",
        type=types.integer(1, MAX_JOB),
        default=DEFAULTS.job,
        metavar="N",
        help=types.with_default(f"PUTs of the short-job scenario, at most {MAX_JOB:,}", DEFAULTS.job),
    )
    parser.add_argument(
        "--warmup",
        type=types.seconds(allow_zero=True),
        metavar="SECONDS",
        help=types.with_default(
            "first seconds of each run left out of the figures", f"{DEFAULTS.warmup:g}; {QUICK_WARMUP:g} with --quick"
        ),
    )
    parser.add_argument(
        "--rate",
        type=types.per_second(),
        default=DEFAULTS.rate,
        metavar="PER_SECOND",
        help=types.with_default("R: requests per second the throttled prefix takes", f"{DEFAULTS.rate:g}"),
    )
    parser.add_argument(
        "--latency",
        type=milliseconds,
        default=DEFAULTS.latency,
        metavar="MS",
        help=types.with_default("median latency added by the proxy, in ms", f"{DEFAULTS.latency * 1000:g}"),
    )
    parser.add_argument(
        "--high-latency",
        type=milliseconds,
        default=DEFAULTS.high_latency,
        metavar="MS",
        help=types.with_default(
            "median latency of the high-latency scenario, in ms", f"{DEFAULTS.high_latency * 1000:g}"
        ),
    )
    parser.add_argument(
        "--workers",
        type=types.integer(1, types.MAX_THREADS),
        default=DEFAULTS.workers,
        metavar="N",
        help=types.with_default(
            "closed-loop worker threads, the same for every competitor",
            f"{DEFAULTS.workers}; high-latency: at least {HIGH_LATENCY_WORKERS}",
        ),
    )
    parser.add_argument(
        "--limit",
        type=types.integer(1),
        default=DEFAULTS.limit,
        metavar="N",
        help=types.with_default("the limit of pool-fixed", DEFAULTS.limit),
    )
    parser.add_argument(
        "--fixed-limits",
        type=limits,
        default=DEFAULTS.fixed_limits,
        metavar="N,N,...",
        help=types.with_default(
            "the limits pool-fixed runs with in the high-latency scenario", ",".join(map(str, DEFAULTS.fixed_limits))
        ),
    )
    parser.add_argument(
        "--auto-scope",
        choices=("pool", "bucket", "prefix"),
        default=DEFAULTS.auto_scope,
        help=types.with_default("the auto-tuning scope of pool-auto", DEFAULTS.auto_scope),
    )
    parser.add_argument(
        "--seed",
        type=types.integer(0),
        default=DEFAULTS.seed,
        metavar="N",
        help=types.with_default("seed of the proxy and the pool", DEFAULTS.seed),
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help=types.with_default("also write every figure and series as JSON", "none"),
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=types.with_default("short runs for a smoke test (figures are rougher)", "off"),
    )
    parser.set_defaults(execute=execute, command_parser=parser)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """The :class:`Settings` the options describe."""
    warmup = args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else DEFAULTS.warmup)
    return Settings(
        duration=args.duration,
        warmup=warmup,
        rate=args.rate,
        latency=args.latency,
        high_latency=args.high_latency,
        workers=args.workers,
        limit=args.limit,
        fixed_limits=args.fixed_limits,
        seed=args.seed,
        auto_scope=args.auto_scope,
        quick=args.quick,
        job=args.job,
    )


def check(args: argparse.Namespace, parser: argparse.ArgumentParser, settings: Settings) -> None:
    """The checks that need several options; ``parser.error`` (exit 2) on the first problem."""
    scenarios = args.scenario or SCENARIO_NAMES
    for name in dict.fromkeys(scenarios):
        if name == HEDGED_READS or SCENARIOS[name].job:
            continue  # measured whole: no warm-up to leave out
        length = duration_of(SCENARIOS[name], settings)
        if settings.warmup >= length - 1 + 1e-9:
            parser.error(
                f"argument --warmup: {settings.warmup:g} s leaves less than 1 s to measure in the {length} s runs "
                f"of the {name} scenario (give a shorter --warmup or a longer --duration)"
            )
    if "tenants" in scenarios and settings.workers < 2:
        parser.error("argument --workers: the tenants scenario needs at least 2 workers (one per tenant)")
    if args.json is not None:
        types.check_output_file(parser, "--json", args.json)


def prepare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    """Every check that starts nothing: the :class:`Settings`. ``parser.error`` (exit 2) on a problem."""
    settings = settings_from(args)
    check(args, parser, settings)
    return settings


def missing_dependencies() -> list[str]:
    """The bench's dependencies that are not installed."""
    return [name for name in NEEDS if importlib.util.find_spec(name) is None]


@contextmanager
def _quiet_connection_pools() -> Iterator[None]:
    """urllib3 warns for every connection it cannot keep when more threads than connections share a client:
    the boto3 competitors do so by design (10 connections); the warnings would bury the output."""
    logger = logging.getLogger("urllib3.connectionpool")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def execute(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Check everything, run every (scenario, competitor), print the tables, write the JSON."""
    settings = prepare(args, parser)
    missing = missing_dependencies()
    if missing:
        print(
            "s3pool bench needs the testing extra: python -m pip install 's3pool-plugins[testing]' "
            f"(missing: {', '.join(missing)})",
            file=sys.stderr,
        )
        return 1
    names = list(dict.fromkeys(args.scenario or SCENARIO_NAMES))
    plans = [plan(SCENARIOS[name], settings) for name in names if name != HEDGED_READS]
    competitors = list(dict.fromkeys(args.competitor or COMPETITORS))
    runs = [(p, v) for p in plans for name in competitors for v in variants(name, p, settings)]
    estimate = int(sum((p.job / settings.rate if p.job else p.duration) + 1 for p, _ in runs))
    if HEDGED_READS in names:
        estimate += 4 * (hedged_duration(settings) + 2)
    parts = [f"{len(runs)} runs ({len(plans)} scenarios x {len(competitors)} competitors)"] if runs else []
    if HEDGED_READS in names:
        parts.append("hedged-reads (4 runs)")
    print(f"s3pool bench: {' and '.join(parts)}, about {estimate} s; seed {settings.seed}", flush=True)
    progress = ProgressLine()
    if progress.live:
        keep_warnings_off_the_status_line()  # the pools' warnings on a line of their own, not in the progress line
    records = bench(runs, settings, progress)
    hedged = hedged_reads(settings, progress) if HEDGED_READS in names else None
    doc = document(settings, plans, records, wall_time=sum(r.wall_time for r in records))
    if hedged is not None:
        doc["hedged_reads"] = hedged
    print()
    print(tables(doc))
    if hedged is not None:
        print()
        print(hedged_table(hedged))
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"\nJSON: {args.json}")
    return 0


def hedged_reads(settings: Settings, progress: ProgressLine) -> dict[str, Any]:
    """Run the hedged-reads scenario against a local S3 of its own; returns its JSON section."""
    from ...testing import LocalS3
    from ..demo import _without_aws_configuration

    with _without_aws_configuration(), _quiet_connection_pools(), LocalS3() as server:
        return run_hedged_reads(server, settings, progress)


def bench(runs: list[tuple[Plan, Any]], settings: Settings, progress: ProgressLine) -> list[RunRecord]:
    """Start the local S3 and make every run in turn; returns their records."""
    from ...testing import LocalS3
    from ..demo import _without_aws_configuration

    records = []
    with _without_aws_configuration(), _quiet_connection_pools(), LocalS3() as server:
        for run_plan, variant in runs:
            title = f"{run_plan.scenario.name} / {variant.label}"
            progress.update(f"{title}: starting", force=True)

            def show(record: RunRecord, second: int, title: str = title) -> None:
                progress.update(
                    f"{title}: {second}/{record.duration} s, {sum(record.requests)} requests, "
                    f"{sum(record.throttled)} 503s"
                )

            record = run_one(server, run_plan, settings, variant, on_second=show)
            if record.status == "ok":
                measured = "over the whole job" if record.job else "after the warm-up"
                cut_off = f" (cut off after {record.duration} s)" if record.cut_off else ""
                progress.done(
                    f"{title}: {goodput(record):.1f} calls/s {measured}{cut_off}, "
                    f"{100 * throttled_share(record):.1f}% 503s, {record.failures} failed calls"
                )
            else:
                progress.done(f"{title}: {record.status}: {record.reason}")
            records.append(record)
    return records


__all__ = ["add_parser", "execute", "prepare"]
