"""``s3pool local-s3``: a local S3 (and optionally the fault proxy in front) for shell tools, until Ctrl-C.

Starts :class:`~s3pool_plugins.testing.LocalS3` (moto's server), and, with
``--chaos`` or any fault option, a :class:`~s3pool_plugins.testing.ChaosProxy`
in front of it with the faults the options describe. Creates ``--bucket``
if given, prints the endpoint and the ``export`` lines a shell needs (from
:meth:`LocalS3.env <s3pool_plugins.testing.LocalS3.env>`), flushes, and
serves until SIGINT (Ctrl-C), SIGTERM or SIGHUP; then it stops both servers,
prints what the proxy counted, and exits 0.

Every option is checked before anything starts; the fault options are
checked by building the proxy's
:class:`~s3pool_plugins.testing.FaultConfig`, so the command accepts
exactly what the proxy does.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import re
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from ..errors import ConfigurationError
from . import parser as types

NEEDS = ("moto", "werkzeug", "boto3")
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

FAULT_OPTIONS: dict[str, str] = {
    "throttle_rate": "--throttle-rate",
    "error_rate": "--error-rate",
    "error_after_forward": "--error-after-forward",
    "reset_rate": "--reset-rate",
    "reset_after_forward": "--reset-after-forward",
    "truncate_rate": "--truncate-rate",
    "truncate_fraction": "--truncate-fraction",
    "slow_body_rate": "--slow-body-rate",
    "slow_body_bytes_per_second": "--slow-body-bytes-per-second",
}
"""The proxy's :class:`FaultConfig` fields set by options: field -> flag."""

LATENCY_OPTIONS: dict[str, str] = {
    "median": "--latency",
    "sigma": "--latency-sigma",
    "tail_probability": "--latency-tail-probability",
    "tail_scale": "--latency-tail-scale",
    "tail_alpha": "--latency-tail-alpha",
    "maximum": "--latency-max",
}
"""The proxy's :class:`Latency` fields set by options: field -> flag."""

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")
_PREFIX_RATE = re.compile(r"(?P<prefix>[^=]*)=(?P<rate>.+)")


def probability(text: str) -> float:
    """An option type: a probability in [0, 1] (0.05 means 5% of the requests)."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise argparse.ArgumentTypeError(f"expected a probability from 0 to 1 (0.05 = 5%), got {types.shown(text)}")
    return value


def bucket_name(text: str) -> str:
    """An option type: an S3 bucket name (3 to 63 lower-case letters, digits, dots and hyphens)."""
    if _BUCKET_NAME.fullmatch(text) is None or ".." in text:
        raise argparse.ArgumentTypeError(
            "expected a bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, starting and ending "
            f"with a letter or digit, got {types.shown(text)}"
        )
    return text


def region(text: str) -> str:
    """An option type: an AWS region name such as ``us-east-1``."""
    if _REGION.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(
            f"expected a region name: lower-case letters, digits and hyphens such as us-east-1, got {types.shown(text)}"
        )
    return text


def prefix_rate(text: str) -> tuple[str, float]:
    """An option type: ``BUCKET/PREFIX=RATE``, requests per second >= 0 for keys under that prefix."""
    match = _PREFIX_RATE.fullmatch(text)
    accepted = "BUCKET/PREFIX=REQUESTS_PER_SECOND (a number >= 0), such as my-bucket/hot/=40"
    if match is None or not match.group("prefix"):
        raise argparse.ArgumentTypeError(f"expected {accepted}, got {types.shown(text)}")
    try:
        rate = float(match.group("rate").strip())
    except ValueError:
        rate = math.nan
    if not (math.isfinite(rate) and rate >= 0):
        raise argparse.ArgumentTypeError(f"expected {accepted}, got {types.shown(text)}")
    return match.group("prefix"), rate


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``local-s3`` to the sub-command parsers ``commands``."""
    from ..testing import FaultConfig, Latency
    from ..testing.local_s3 import DEFAULT_REGION

    faults = FaultConfig()
    latency = Latency(median=0.0)
    parser: argparse.ArgumentParser = commands.add_parser(
        "local-s3",
        help="serve a local S3 (optionally behind the fault proxy) for shell tools, until Ctrl-C",
        description=(
            "Start a local S3 (moto's server) on a loopback port and, with --chaos or any fault option, the fault "
            "proxy in front of it. Print the endpoint and the environment to export, then serve until Ctrl-C, "
            "SIGTERM or SIGHUP. Nothing leaves the machine; the data lives in memory and goes when it stops."
        ),
        epilog="Example: s3pool local-s3 --bucket demo --limit-writes demo/hot/=40 --latency 0.02",
    )
    where = parser.add_argument_group("server")
    where.add_argument(
        "--host", default="127.0.0.1", metavar="ADDRESS", help=types.with_default("address to listen on", "%(default)s")
    )
    where.add_argument(
        "--port",
        type=types.integer(0, 65535),
        default=0,
        metavar="N",
        help=types.with_default("port of the S3 server", "0: a free port"),
    )
    where.add_argument(
        "--proxy-port",
        type=types.integer(0, 65535),
        default=0,
        metavar="N",
        help=types.with_default("port of the fault proxy", "0: a free port"),
    )
    where.add_argument(
        "--bucket",
        type=bucket_name,
        action="append",
        metavar="NAME",
        help=types.with_default("create this bucket, repeatable", "none"),
    )
    where.add_argument(
        "--region",
        type=region,
        default=DEFAULT_REGION,
        metavar="NAME",
        help=types.with_default("region to export", "%(default)s"),
    )
    chaos = parser.add_argument_group(
        "fault proxy (--chaos, or any option of this group, puts it in front of the S3 server)"
    )
    chaos.add_argument(
        "--chaos",
        action="store_true",
        help=types.with_default("serve through the fault proxy, even with no fault (it still counts requests)", "off"),
    )
    chaos.add_argument(
        "--seed",
        type=types.integer(0),
        metavar="N",
        help=types.with_default("seed of the proxy's random faults and latencies", 0),
    )

    def rate(flag: str, field: str, what: str) -> None:
        chaos.add_argument(
            flag,
            dest=field,
            type=probability,
            metavar="P",
            help=types.with_default(what, f"{getattr(faults, field):g}"),
        )

    rate("--throttle-rate", "throttle_rate", "share of requests answered 503 SlowDown at random")
    rate("--error-rate", "error_rate", "share of requests answered 500 InternalError")
    rate("--reset-rate", "reset_rate", "share of requests whose connection is reset")
    rate("--truncate-rate", "truncate_rate", "share of responses whose body is cut short")
    rate("--slow-body-rate", "slow_body_rate", "share of responses whose body trickles")
    chaos.add_argument(
        "--error-after-forward",
        action="store_true",
        default=None,
        help=types.with_default("errors come after the S3 server acted (the write happened)", "off"),
    )
    chaos.add_argument(
        "--reset-after-forward",
        action="store_true",
        default=None,
        help=types.with_default("resets come after the S3 server acted", "off"),
    )
    chaos.add_argument(
        "--truncate-fraction",
        dest="truncate_fraction",
        type=probability,
        metavar="FRACTION",
        help=types.with_default("share of a truncated body that is sent, below 1", f"{faults.truncate_fraction:g}"),
    )
    chaos.add_argument(
        "--slow-body-bytes-per-second",
        dest="slow_body_bytes_per_second",
        type=types.per_second(),
        metavar="BYTES",
        help=types.with_default("trickle rate of a slow body", f"{faults.slow_body_bytes_per_second:g}"),
    )
    chaos.add_argument(
        "--latency",
        dest="median",
        type=types.seconds(allow_zero=True),
        metavar="SECONDS",
        help=types.with_default("median latency added to each forwarded request", "none"),
    )
    chaos.add_argument(
        "--latency-sigma",
        dest="sigma",
        type=types.bounded("sigma", "a number", allow_zero=True),
        metavar="SIGMA",
        help=types.with_default("spread of the lognormal latency (0: constant)", f"{latency.sigma:g}"),
    )
    chaos.add_argument(
        "--latency-tail-probability",
        dest="tail_probability",
        type=probability,
        metavar="P",
        help=types.with_default("share of latencies drawn from a heavy (Pareto) tail", f"{latency.tail_probability:g}"),
    )
    chaos.add_argument(
        "--latency-tail-scale",
        dest="tail_scale",
        type=types.seconds(allow_zero=True),
        metavar="SECONDS",
        help=types.with_default("smallest tail latency", "10 times the median"),
    )
    chaos.add_argument(
        "--latency-tail-alpha",
        dest="tail_alpha",
        type=types.bounded("alpha", "a number"),
        metavar="ALPHA",
        help=types.with_default("shape of the tail, > 0 (smaller is heavier)", f"{latency.tail_alpha:g}"),
    )
    chaos.add_argument(
        "--latency-max",
        dest="maximum",
        type=types.seconds(allow_zero=True),
        metavar="SECONDS",
        help=types.with_default("cap of every latency", f"{latency.maximum:g}"),
    )
    chaos.add_argument(
        "--limit-reads",
        type=prefix_rate,
        action="append",
        metavar="BUCKET/PREFIX=RATE",
        help=types.with_default(
            "GET and HEAD requests per second under that prefix (503 SlowDown beyond, as S3 per prefix), repeatable",
            "none",
        ),
    )
    chaos.add_argument(
        "--limit-writes",
        type=prefix_rate,
        action="append",
        metavar="BUCKET/PREFIX=RATE",
        help=types.with_default("other requests per second under that prefix, repeatable", "none"),
    )
    chaos.add_argument(
        "--limit-burst",
        type=types.bounded("burst", "a number of requests"),
        metavar="N",
        help=types.with_default("requests a limited prefix takes at once (its token bucket)", "one second's rate"),
    )
    parser.set_defaults(execute=execute, command_parser=parser)
    return parser


@dataclass(frozen=True)
class Plan:
    """What ``local-s3`` serves: checked settings, built before anything starts."""

    host: str
    port: int
    proxy_port: int
    region: str
    buckets: tuple[str, ...]
    chaos: bool
    seed: int
    faults: Any
    """The proxy's ``FaultConfig``."""
    limits: Mapping[str, tuple[float | None, float | None]]
    """``bucket/prefix`` -> (reads, writes) per second."""
    burst: float | None


def prepare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Plan:
    """Every check, without starting anything: the :class:`Plan`. ``parser.error`` (exit 2) on a problem."""
    from ..testing import FaultConfig, Latency

    latency_given = {field: getattr(args, field) for field in LATENCY_OPTIONS if getattr(args, field) is not None}
    fault_given = {field: getattr(args, field) for field in FAULT_OPTIONS if getattr(args, field) is not None}
    limits: dict[str, tuple[float | None, float | None]] = {}
    for reads, entries in ((True, args.limit_reads or ()), (False, args.limit_writes or ())):
        for prefix, per_second in entries:
            old_reads, old_writes = limits.get(prefix, (None, None))
            limits[prefix] = (per_second, old_writes) if reads else (old_reads, per_second)
    try:
        latency = None
        if latency_given:
            if "median" not in latency_given:
                parser.error(f"argument {LATENCY_OPTIONS[sorted(latency_given)[0]]}: only together with --latency")
            latency = Latency(**latency_given)
        faults = FaultConfig(latency=latency, **fault_given)
    except ConfigurationError as error:
        parser.error(_blame(error))
    if args.limit_burst is not None and args.limit_burst < 1:
        parser.error(f"argument --limit-burst: expected a number >= 1, got {args.limit_burst:g}")
    if args.limit_burst is not None and not limits:
        parser.error("argument --limit-burst: only together with --limit-reads or --limit-writes")
    chaos = bool(args.chaos or latency_given or fault_given or limits or args.seed is not None)
    return Plan(
        host=args.host,
        port=args.port,
        proxy_port=args.proxy_port,
        region=args.region,
        buckets=tuple(dict.fromkeys(args.bucket or ())),
        chaos=chaos,
        seed=args.seed or 0,
        faults=faults,
        limits=limits,
        burst=args.limit_burst,
    )


def _blame(error: ConfigurationError) -> str:
    """The proxy's error in the words of the options."""
    fields = error.option.split("+")
    flags = [LATENCY_OPTIONS.get(field.removeprefix("latency."), FAULT_OPTIONS.get(field, field)) for field in fields]
    if len(flags) > 1:
        return f"arguments {', '.join(flags)}: together {error.got:g}, expected {error.accepted}"
    return f"argument {flags[0]}: {error.got!r} is not accepted: expected {error.accepted}"


def missing_dependencies() -> list[str]:
    """The command's dependencies that are not installed."""
    return [name for name in NEEDS if importlib.util.find_spec(name) is None]


def execute(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Check, start, print the environment, serve until a stop signal, stop cleanly."""
    plan = prepare(args, parser)
    missing = missing_dependencies()
    if missing:
        print(
            "s3pool local-s3 needs the testing extra: python -m pip install 's3pool-plugins[testing]' "
            f"(missing: {', '.join(missing)})",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()
    with _stop_signals(stop), ExitStack() as servers:
        try:
            server, proxy = _start(plan, servers)
        except OSError as error:
            parser.error(f"argument --host/--port/--proxy-port: cannot listen on {plan.host}: {error}")
        for bucket in plan.buckets:
            try:
                server.create_bucket(bucket)
            except Exception as error:  # the S3 server refused the name (botocore's ClientError)
                parser.error(f"argument --bucket: the local S3 refused {bucket!r}: {error}")
        endpoint = proxy.endpoint_url if proxy is not None else server.endpoint_url
        print("\n".join(announcement(plan, server, proxy, server.env(endpoint))), flush=True)
        while not stop.wait(0.5):
            pass
        print("s3pool local-s3: stopping", file=sys.stderr, flush=True)
        if proxy is not None:
            proxy.stop()
            print(proxy_summary(proxy.stats()), file=sys.stderr, flush=True)
    return 0


def _start(plan: Plan, servers: ExitStack) -> tuple[Any, Any]:
    """Start the S3 server, and the proxy when the plan has one; ``servers`` stops them."""
    from ..testing import ChaosProxy, LocalS3

    server = servers.enter_context(LocalS3(host=plan.host, port=plan.port, region=plan.region))
    if not plan.chaos:
        return server, None
    proxy = ChaosProxy(server.endpoint_url, seed=plan.seed, faults=plan.faults, host=plan.host, port=plan.proxy_port)
    for prefix, (reads, writes) in plan.limits.items():
        proxy.limit_prefix(prefix, reads_per_second=reads, writes_per_second=writes, burst=plan.burst)
    servers.enter_context(proxy)
    return server, proxy


def announcement(plan: Plan, server: Any, proxy: Any, environment: Mapping[str, str]) -> list[str]:
    """What is printed once serving: comment lines, then one ``export`` line per variable (shell-quoted)."""
    lines = [f"# s3pool local-s3: S3 (moto) at {server.endpoint_url}"]
    if proxy is not None:
        lines.append(f"# fault proxy at {proxy.endpoint_url} in front of it: {describe_faults(plan)}")
    if plan.buckets:
        lines.append(f"# buckets: {', '.join(plan.buckets)}")
    lines.append("# paste these lines into a shell; Ctrl-C here stops the servers (their data goes with them)")
    lines.extend(f"export {name}={shlex.quote(value)}" for name, value in environment.items())
    return lines


def describe_faults(plan: Plan) -> str:
    """The proxy's faults in a few words."""
    faults = plan.faults
    parts = []
    if faults.latency is not None:
        parts.append(f"latency median {faults.latency.median:g} s")
    for field, flag in FAULT_OPTIONS.items():
        value = getattr(faults, field)
        if field.endswith("_rate") and value:
            parts.append(f"{flag[2:].replace('-', ' ')} {value:g}")
    for prefix, (reads, writes) in plan.limits.items():
        rates = [f"{what} {value:g}/s" for what, value in (("reads", reads), ("writes", writes)) if value is not None]
        parts.append(f"{prefix} limited to {' and '.join(rates)}")
    return ", ".join(parts) if parts else "no faults (it counts requests)"


def proxy_summary(stats: Any) -> str:
    """What the proxy counted, in one line."""
    return (
        f"s3pool local-s3: the proxy saw {stats.requests} requests: {stats.throttled} throttled, "
        f"{stats.internal_errors} internal errors, {stats.resets} resets, {stats.truncated} truncated, "
        f"{stats.slow_bodies} slow bodies"
    )


@contextmanager
def _stop_signals(stop: threading.Event) -> Iterator[None]:
    """While inside: SIGINT, SIGTERM and SIGHUP set ``stop`` instead of ending the process."""

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {}
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        try:
            previous[signum] = signal.signal(signum, handle)
        except ValueError:  # not the main thread: Ctrl-C raises KeyboardInterrupt as usual
            break
    try:
        yield
    except KeyboardInterrupt:
        stop.set()
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
