"""``s3pool run [options] -- PROGRAM [ARGS...]``: an unmodified program under one pool per process.

The program is started with

- ``BOTOCORE_EXPERIMENTAL__PLUGINS`` naming the package's botocore plugin
  (appended to a value already set), so botocore installs each process's
  default pool into every S3 client it creates, boto3, aiobotocore, s3fs
  and aws-cli included. The mechanism is **experimental in botocore**;
- ``S3POOL_*`` variables from the options, which configure that pool;
- ``S3POOL_REPORT``, a directory this command creates: each process of the
  program writes its report there at exit (see
  :mod:`s3pool_plugins.core.report`), and this command merges them into the
  summary it prints and the JSON it writes with ``--report``.

Every option, inherited ``S3POOL_*`` variable and the program itself are
checked before the program starts. The program's exit status is passed
through (``128 + N`` when signal ``N`` ended it). ``SIGTERM`` and ``SIGHUP``
sent to this command are forwarded to the program, also while it starts;
``SIGINT`` is forwarded too unless this command runs in its terminal's
foreground group (the terminal then delivers Ctrl-C to the program directly).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from ..adapters.botocore.bodies import BODY_IDLE_TIMEOUT
from ..core.config import PoolConfig
from ..core.environment import PREFIX, config_from_environment, variable_for
from ..core.fleet.options import redact_url, resolve_fleet
from ..core.limits.options import AutoTuning
from ..core.metrics.options import MonitoringConfig
from ..core.report import (
    FILE_PREFIX,
    REFRESH_VARIABLE,
    REPORT_VARIABLE,
    call_time_summary,
    load_reports,
    merge_reports,
)
from ..errors import ConfigurationError
from ..hooks.manager import create_plugin_manager
from . import parser as types
from .interpreter import find_program, interpreter_warning
from .status import REFRESH, StatusLine
from .summary import run_summary

PLUGINS_VARIABLE = "BOTOCORE_EXPERIMENTAL__PLUGINS"
PLUGIN_NAME = "s3pool"
PLUGIN_MODULE = "s3pool_plugins.adapters.botocore.plugin"
AUTOLOAD_VARIABLE = "S3POOL_DISABLE_PLUGIN_AUTOLOAD"
RUN_FORMAT = "s3pool-run/1"

POOL_OPTIONS: dict[str, str] = {
    "concurrency": "--concurrency",
    "retries": "--retries",
    "retry_delay": "--retry-delay",
    "max_retry_delay": "--max-retry-delay",
    "queue_timeout": "--queue-timeout",
    "priority": "--priority",
    "monitoring": "--monitoring",
    "body_idle_timeout": "--body-idle-timeout",
    "auto_min_concurrency": "--min-concurrency",
    "auto_max_concurrency": "--max-concurrency",
    "auto_target_latency": "--target-latency",
    "auto_target_memory_percent": "--target-memory-percent",
    "auto_adjustment_interval": "--adjustment-interval",
    "auto_scope": "--auto-scope",
    "fleet": "--fleet",
    "fleet_name": "--fleet-name",
    "fleet_concurrency": "--fleet-concurrency",
    "hedge": "--hedge",
    "hedge_delay": "--hedge-delay",
}
"""Pool options of ``s3pool run``: argparse destination -> flag. Each sets ``S3POOL_<DESTINATION>``."""


def pool_defaults() -> dict[str, str]:
    """The value each pool option of ``s3pool run`` has when neither the option nor its variable is given."""
    config = PoolConfig()
    auto = AutoTuning()
    policy = config.retry_policy
    assert policy is not None and isinstance(config.monitoring, MonitoringConfig)
    values: dict[str, object] = {
        "concurrency": config.concurrency,
        "retries": policy.retries,
        "retry_delay": policy.retry_delay,
        "max_retry_delay": policy.max_retry_delay,
        "queue_timeout": config.queue_timeout,
        "priority": config.priority,
        "monitoring": config.monitoring.mode,
        "body_idle_timeout": BODY_IDLE_TIMEOUT,
        "auto_min_concurrency": auto.min_concurrency,
        "auto_max_concurrency": auto.max_concurrency,
        "auto_target_latency": auto.target_latency,
        "auto_target_memory_percent": auto.target_memory_percent,
        "auto_adjustment_interval": auto.adjustment_interval,
        "auto_scope": auto.scope,
        "fleet": config.fleet_description,
        "fleet_name": config.fleet_name,
        "fleet_concurrency": config.fleet_concurrency,
        "hedge": "off",
        "hedge_delay": "learned",
    }
    return {option: "none" if value is None else _text(value) for option, value in values.items()}


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Add ``run`` to the sub-command parsers ``commands``."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "run",
        help="run a program with every S3 client under one pool per process",
        description=(
            "Run an unmodified program (a Python script, aws-cli, anything using botocore, aiobotocore or s3fs) "
            "with every S3 client under one pool per process, then print a summary of its S3 calls. "
            "It works through botocore's plugin variable BOTOCORE_EXPERIMENTAL__PLUGINS, a mechanism botocore "
            "marks experimental. A pool option not given keeps the pool's default, or the S3POOL_ variable "
            "of the same name when it is exported."
        ),
        epilog="Example: s3pool run --concurrency 32 --retries 8 --report s3.json -- python nightly_export.py",
    )
    defaults = pool_defaults()

    def helped(option: str, text: str) -> str:
        return types.with_default(text, defaults[option])

    pool = parser.add_argument_group("pool options (each sets the S3POOL_ variable of the same name)")
    pool.add_argument(
        "--concurrency",
        type=types.concurrency,
        metavar="N|auto",
        help=helped(
            "concurrency",
            "most S3 requests in flight per process, or 'auto' to adapt it to latency, throttling and memory",
        ),
    )
    pool.add_argument(
        "--retries", type=types.integer(0), metavar="N", help=helped("retries", "retries after the first attempt")
    )
    pool.add_argument(
        "--retry-delay",
        type=types.seconds(),
        metavar="SECONDS",
        help=helped("retry_delay", "backoff base: retry n waits up to SECONDS * 2**n"),
    )
    pool.add_argument(
        "--max-retry-delay",
        type=types.seconds(),
        metavar="SECONDS",
        help=helped("max_retry_delay", "backoff cap"),
    )
    pool.add_argument(
        "--queue-timeout",
        type=types.seconds_or_none,
        metavar="SECONDS",
        help=helped("queue_timeout", "longest wait for a slot ('none': no limit)"),
    )
    pool.add_argument(
        "--priority",
        type=types.number,
        metavar="P",
        help=helped("priority", "default priority of the calls (higher runs first)"),
    )
    pool.add_argument(
        "--monitoring",
        choices=("off", "light", "full"),
        help=helped("monitoring", "how much the pool measures"),
    )
    pool.add_argument(
        "--body-idle-timeout",
        type=types.seconds(),
        metavar="SECONDS",
        help=helped(
            "body_idle_timeout",
            "a streamed result (GetObject's body) keeps its request's slot until read to the end or closed, "
            "or until left unread this long",
        ),
    )
    auto = parser.add_argument_group("auto-tuning (with --concurrency auto)")
    auto.add_argument(
        "--min-concurrency",
        dest="auto_min_concurrency",
        type=types.integer(1),
        metavar="N",
        help=helped("auto_min_concurrency", "lowest limit the adaptive limit may reach"),
    )
    auto.add_argument(
        "--max-concurrency",
        dest="auto_max_concurrency",
        type=types.integer(1),
        metavar="N",
        help=helped("auto_max_concurrency", "highest limit the adaptive limit may reach"),
    )
    auto.add_argument(
        "--target-latency",
        dest="auto_target_latency",
        type=types.seconds(),
        metavar="SECONDS",
        help=helped(
            "auto_target_latency",
            "shrink the limit when requests take longer than this (none: latency is judged by its own baseline)",
        ),
    )
    auto.add_argument(
        "--target-memory-percent",
        dest="auto_target_memory_percent",
        type=types.fraction,
        metavar="FRACTION",
        help=helped("auto_target_memory_percent", "shrink the limit when more of the memory is used (0.9 = 90%%)"),
    )
    auto.add_argument(
        "--adjustment-interval",
        dest="auto_adjustment_interval",
        type=types.seconds(),
        metavar="SECONDS",
        help=helped("auto_adjustment_interval", "seconds between two evaluations of the latency"),
    )
    auto.add_argument(
        "--auto-scope",
        dest="auto_scope",
        choices=("pool", "bucket", "prefix"),
        help=helped("auto_scope", "one adaptive limit for the pool, or one per bucket or key prefix"),
    )
    otel = pool.add_mutually_exclusive_group()
    otel.add_argument(
        "--otel",
        dest="otel",
        action="store_true",
        default=None,
        help="load s3pool's entry-point plugins, OpenTelemetry's included; it records spans "
        "when the program configures an OpenTelemetry SDK (default: on)",
    )
    otel.add_argument(
        "--no-otel",
        dest="otel",
        action="store_false",
        help=f"load no entry-point plugins ({AUTOLOAD_VARIABLE}=1) (default: off)",
    )
    fleet = parser.add_argument_group("fleet (one S3 budget shared by the processes of many runs and hosts)")
    fleet.add_argument(
        "--fleet",
        metavar="URL",
        help=helped("fleet", "the store the fleet shares its budget through, such as redis://host:6379/0"),
    )
    fleet.add_argument(
        "--fleet-name",
        metavar="NAME",
        help=helped("fleet_name", "the fleet's name: runs with the same store and name share"),
    )
    fleet.add_argument(
        "--fleet-concurrency",
        type=types.integer(1),
        metavar="N",
        help=helped("fleet_concurrency", "most S3 requests in flight across the whole fleet, per partition"),
    )
    hedge = parser.add_argument_group("hedged reads (GetObject, HeadObject, ListObjectsV2)")
    hedge.add_argument(
        "--hedge",
        action="store_true",
        default=None,
        help=helped("hedge", "send one more attempt of a read that is slow to answer; at most 5%% extra requests"),
    )
    hedge.add_argument(
        "--hedge-delay",
        type=types.seconds(),
        metavar="SECONDS",
        help=helped(
            "hedge_delay", "hedge a read after SECONDS without a response (with --hedge; default: learned, its p95)"
        ),
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help=types.with_default("also write the summary as JSON to FILE", "none"),
    )
    output.add_argument(
        "--quiet",
        action="store_true",
        help=types.with_default("print no summary (the --report file is still written)", "off"),
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- PROGRAM [ARGS...]", help="what to run")
    parser.set_defaults(execute=execute, command_parser=parser)
    return parser


def plugins_value(existing: str | None) -> str:
    """``BOTOCORE_EXPERIMENTAL__PLUGINS`` with the s3pool plugin added (replacing an entry of that name).

    Raises ``ValueError`` when ``existing`` is ``DISABLED`` (botocore's switch that turns plugins off).
    """
    text = (existing or "").strip()
    if text == "DISABLED":
        raise ValueError(f"{PLUGINS_VARIABLE}=DISABLED turns botocore's plugins off, and s3pool run needs them")
    entries = [
        entry.strip() for entry in text.split(",") if entry.strip() and entry.split("=", 1)[0].strip() != PLUGIN_NAME
    ]
    return ",".join([*entries, f"{PLUGIN_NAME}={PLUGIN_MODULE}"])


def pool_variables(args: argparse.Namespace) -> dict[str, str]:
    """The ``S3POOL_*`` variables the options set (options not given set nothing)."""
    variables: dict[str, str] = {}
    for option in POOL_OPTIONS:
        value = getattr(args, option)
        if value is not None:
            variables[PREFIX + option.upper()] = _text(value)
    if args.otel is False:
        variables[AUTOLOAD_VARIABLE] = "1"
    return variables


def _redacted(variables: dict[str, str]) -> dict[str, str]:
    """``variables`` with the fleet's URL shown without credentials."""
    fleet = PREFIX + "FLEET"
    if fleet in variables and variables[fleet].strip().lower() not in ("", "none"):
        variables = {**variables, fleet: redact_url(variables[fleet])}
    return variables


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def child_environment(args: argparse.Namespace, base: Mapping[str, str]) -> dict[str, str]:
    """The program's environment: ``base`` plus the plugin variable and the pool variables.

    Raises ``ValueError`` with a message naming the option the user typed
    (or the inherited variable) at fault when the pool the program would
    build is misconfigured.
    """
    environment = dict(base)
    if args.otel is True:
        environment.pop(AUTOLOAD_VARIABLE, None)
    variables = pool_variables(args)
    environment.update(variables)
    try:
        environment[PLUGINS_VARIABLE] = plugins_value(base.get(PLUGINS_VARIABLE))
    except ValueError as error:
        raise ValueError(f"environment variable {error}") from None
    pool_environment = {k: v for k, v in environment.items() if k.startswith(PREFIX)}
    _check_auto_options(args, pool_environment)
    try:
        config = config_from_environment(pool_environment)
        _check_fleet(config, pool_environment)
    except ConfigurationError as error:
        raise ValueError(_blame(error, variables)) from None
    return environment


def _check_fleet(config: PoolConfig, environment: Mapping[str, str]) -> None:
    """A fleet URL must be one a plugin the program's pools load provides (checked without connecting)."""
    if not isinstance(config.fleet, str):
        return
    switch = environment.get(AUTOLOAD_VARIABLE, "").strip().lower()
    autoload = switch in ("", "0", "false", "no", "off") and config.load_entrypoints
    backend, _ = resolve_fleet(config.fleet, config.fleet_name, create_plugin_manager((), autoload))
    backend.close()


def _flag_of(option: str) -> str:
    return POOL_OPTIONS[option]


def _check_auto_options(args: argparse.Namespace, environment: Mapping[str, str]) -> None:
    """The relations between options, in the words of the options: auto-tuning needs ``--concurrency auto``,
    and the minimum of the adaptive limit may not exceed its maximum. Raises ``ValueError``."""
    given = [option for option in POOL_OPTIONS if option.startswith("auto_") and getattr(args, option) is not None]
    if not given:
        return
    variable = PREFIX + "CONCURRENCY"
    concurrency = environment.get(variable, pool_defaults()["concurrency"]).strip().lower()
    if concurrency != "auto":
        exported = args.concurrency is None and variable in environment
        source = f"; {variable} is {environment[variable]!r} in the environment" if exported else ""
        raise ValueError(
            f"argument {_flag_of(given[0])}: only together with --concurrency auto "
            f"(a fixed limit does not adapt{source})"
        )
    bounds = {}
    for option in ("auto_min_concurrency", "auto_max_concurrency"):
        variable = PREFIX + option.upper()
        if getattr(args, option) is not None:
            bounds[option] = (getattr(args, option), _flag_of(option))
            continue
        try:
            value = int(environment[variable]) if variable in environment else int(pool_defaults()[option])
        except ValueError:
            return  # a bad inherited variable: config_from_environment names it
        bounds[option] = (value, variable if variable in environment else "default")
    (low, low_source), (high, high_source) = bounds["auto_min_concurrency"], bounds["auto_max_concurrency"]
    if low <= high:
        return
    if args.auto_max_concurrency is not None:
        raise ValueError(
            f"argument --max-concurrency: expected an integer >= the minimum ({low_source} {low}), got {high!r}"
        )
    raise ValueError(
        f"argument --min-concurrency: expected an integer <= the maximum ({high_source} {high}; "
        f"raise it with --max-concurrency), got {low!r}"
    )


def _blame(error: ConfigurationError, variables: Mapping[str, str]) -> str:
    """The error, naming the option that set the variable, or the inherited variable, in the user's words."""
    variable = error.option if error.option.startswith(PREFIX) else variable_for(error.option)
    option = variable[len(PREFIX) :].lower()
    accepted = _in_users_words(str(error.accepted), variables)
    if error.unknown:
        hint = f"; did you mean {error.suggestion}?" if error.suggestion else ""
        known = accepted.removeprefix("one of the variables ")
        return f"environment variable {variable} is not one s3pool knows{hint} (known: {known})"
    if variable in variables and option in POOL_OPTIONS:
        return f"argument {POOL_OPTIONS[option]}: {error.got!r} is not accepted: expected {accepted}"
    return f"environment variable {variable}: {error.got!r} is not accepted: expected {accepted}"


def _in_users_words(text: str, variables: Mapping[str, str]) -> str:
    """``text`` (a message of the pool's configuration) with the pool's option names replaced by what the
    user typed: the flag for a variable an option set, the ``S3POOL_*`` variable otherwise."""
    names: dict[str, str] = {f"{PREFIX}CONCURRENCY=auto": "--concurrency auto"}
    for option, flag in POOL_OPTIONS.items():
        variable = PREFIX + option.upper()
        said = flag if variable in variables else variable
        field = option[len("auto_") :] if option.startswith("auto_") else option
        core = f"auto_tuning.{field}" if option.startswith("auto_") else option
        names[variable] = said
        names.update({name: said for name in (core, field) if "_" in name})  # not words such as "retries"
    pattern = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    text = re.sub(rf"(?<![\w.=-])(?:{pattern})(?![\w])", lambda match: names[match.group(0)], text)
    return re.sub(r"\ban int\b", "an integer", text)


def prepare(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[list[str], dict[str, str]]:
    """Every check that needs no program run: the command to run and its environment.

    ``parser.error`` (usage, exit status 2) on the first problem.
    """
    command: list[str] = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("the program to run is missing: s3pool run [options] -- PROGRAM [ARGS...]")
    try:
        environment = child_environment(args, os.environ)
    except ValueError as error:
        parser.error(str(error))
    if find_program(command[0], environment) is None:
        parser.error(f"argument PROGRAM: {command[0]!r} was not found (not on PATH, or not an executable file)")
    if args.report is not None:
        types.check_output_file(parser, "--report", args.report)
    return command, environment


def execute(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Check everything, run the program, merge the reports, print and write the summary."""
    command, environment = prepare(args, parser)
    warning = interpreter_warning(command, environment)
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="s3pool-run-") as folder:
        environment[REPORT_VARIABLE] = folder
        status_line = StatusLine(Path(folder), sys.stderr, quiet=args.quiet)
        if status_line.enabled:
            environment[REFRESH_VARIABLE] = str(REFRESH)
        started = time.monotonic()
        with status_line:
            status = run_program(command, environment)
        wall_time = time.monotonic() - started
        reports, problems = load_reports(sorted(Path(folder).glob(f"{FILE_PREFIX}*.json")))
    document = run_document(reports, program=command[0], exit_code=status, wall_time=wall_time, args=args)
    document["fleet"] = fleet_settings(environment)
    for problem in problems:
        print(f"s3pool run: ignored a report: {problem}", file=sys.stderr)
    if not args.quiet:
        print(run_summary(document, program=command[0], exit_code=status, wall_time=wall_time), file=sys.stderr)
    if args.report is not None:
        try:
            args.report.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        except OSError as error:
            print(f"s3pool run: could not write --report {str(args.report)!r}: {error}", file=sys.stderr)
    return status


def fleet_settings(environment: Mapping[str, str]) -> dict[str, Any] | None:
    """The fleet the program's pools join (its store without credentials, and name), or None."""
    pool_environment = {k: v for k, v in environment.items() if k.startswith(PREFIX)}
    try:
        config = config_from_environment(pool_environment)
    except ConfigurationError:
        return None
    if config.fleet is None:
        return None
    return {
        "description": config.fleet_description,
        "fleet_name": config.fleet_name,
        "fleet_concurrency": config.fleet_concurrency,
    }


def run_document(
    reports: Sequence[Mapping[str, Any]], *, program: str, exit_code: int, wall_time: float, args: argparse.Namespace
) -> dict[str, Any]:
    """The ``--report`` JSON: the merged process reports, the program's status and the settings used."""
    merged = merge_reports(reports)
    sketch = merged.pop("call_time")
    return {
        "format": RUN_FORMAT,
        "program": program,
        "exit_code": exit_code,
        "wall_time": wall_time,
        "settings": _redacted(pool_variables(args)),
        **{key: value for key, value in merged.items() if key != "format"},
        "call_time": call_time_summary(sketch),
        "call_time_sketch": sketch,
    }


def run_program(command: Sequence[str], environment: Mapping[str, str]) -> int:
    """Run ``command`` to its end; its exit status, or ``128 + N`` when signal ``N`` ended it."""
    with _SignalForwarder() as forwarder:
        try:
            process = subprocess.Popen(list(command), env=dict(environment))
        except OSError as error:
            print(f"s3pool run: cannot start {command[0]!r}: {error}", file=sys.stderr)
            return 127 if isinstance(error, FileNotFoundError) else 126
        forwarder.started(process)
        while True:
            try:
                status = process.wait()
                break
            except KeyboardInterrupt:  # only when SIGINT could not be handled (not the main thread)
                continue
    return 128 - status if status < 0 else status


def _terminal_delivers_sigint() -> bool:
    """True when this process is in its terminal's foreground group: Ctrl-C reaches the program directly."""
    try:
        fd = os.open(os.ctermid(), os.O_RDONLY | getattr(os, "O_NOCTTY", 0))
    except (OSError, AttributeError):
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


class _SignalForwarder:
    """While the program runs: forward SIGTERM and SIGHUP to it, and SIGINT unless the terminal delivers it.

    Installed before the program starts (``exec`` resets Python handlers, so the program keeps default
    dispositions): a signal that arrives while it starts is sent to it once it exists, instead of ending
    this command and orphaning the program.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._pending: list[int] = []
        self._previous: dict[int, Any] = {}

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and _terminal_delivers_sigint():
            return
        if self._process is None:
            self._pending.append(signum)
        elif self._process.poll() is None:
            self._process.send_signal(signum)

    def started(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        pending, self._pending = self._pending, []
        for signum in pending:
            if process.poll() is None:
                process.send_signal(signum)

    def __enter__(self) -> _SignalForwarder:
        wanted = [signal.SIGTERM, signal.SIGINT]
        if hasattr(signal, "SIGHUP"):
            wanted.append(signal.SIGHUP)
        for signum in wanted:
            if signal.getsignal(signum) is signal.SIG_IGN:
                continue  # ignored by whoever started us (nohup, `cmd &`): exec passes that on to the program
            # Without POSIX process groups (Windows) Ctrl-C reaches every process of the console, and
            # SIGINT cannot be sent to a child: it is ignored here, as before.
            handler = self._forward if signum != signal.SIGINT or os.name == "posix" else signal.SIG_IGN
            try:
                self._previous[signum] = signal.signal(signum, handler)
            except ValueError:  # not the main thread: signals stay as they are
                break
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, old in self._previous.items():
            signal.signal(signum, old)
