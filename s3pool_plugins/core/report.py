"""Run reports: what the process-wide default pool did, written when the process ends.

``s3pool run`` sets ``S3POOL_REPORT`` for the program it starts. When the
default pool is built from the environment with that variable set,
:func:`attach_from_environment` registers a :class:`CallRecorder` on it and
arranges for :func:`write_report` to run when the process ends: at
interpreter exit (``atexit``) and, in a ``multiprocessing`` child (which
leaves through ``os._exit``), from ``multiprocessing``'s own exit finalizers.

``S3POOL_REPORT`` names either

- an existing **directory**: each process writes ``s3pool-<pid>.json``
  there, so the processes of one program (``multiprocessing``, its own
  subprocesses) never overwrite each other; :func:`merge_reports` combines
  them; or
- a **file**: written by every process that ends, the last one wins; a
  ``{pid}`` in the name is replaced by the process id.

With ``S3POOL_REPORT_REFRESH`` set to a number of seconds, a daemon thread
also rewrites the report that often while the process runs, so a watcher
(``s3pool run``'s status line on a terminal) can follow it.

A forked child starts its counts from zero (its parent's calls are the
parent's; ``peak_active`` is the pool's own, which the fork copied). A
process that is killed (a signal, ``os._exit`` outside
``multiprocessing``, ``multiprocessing.Pool.terminate()``) writes nothing.

The report holds counts and call times only: operation names, never keys,
buckets, arguments or credentials.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..hooks import hookimpl
from .metrics import QuantileSketch
from .terminal_log import keep_warnings_off_the_status_line

REPORT_VARIABLE = "S3POOL_REPORT"
REFRESH_VARIABLE = "S3POOL_REPORT_REFRESH"
"""Seconds between rewrites of the report while the process runs (unset, empty or not > 0: only at exit)."""
FORMAT = "s3pool-report/1"
"""The ``format`` field of every report this module writes or merges."""

FILE_PREFIX = "s3pool-"
_ALPHA = 0.01
_COUNTED = ("processed", "succeeded", "errors", "cancelled", "retries", "throttled", "nested")
_JUDGED = ("throttled_caused", "throttled_ambient")
"""Counted like :data:`_COUNTED`; None in ``stats()`` (a pool not on auto) counts 0."""


class CallRecorder:
    """A plugin that counts settled tasks by name and sketches their durations (seconds).

    The duration of a task runs from its creation to its settling: for an S3
    API call, the whole call, queue waits and retry backoff included.
    Thread-safe; costs one lock and one sketch insertion per task.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            self.durations = QuantileSketch(alpha=_ALPHA)
            self.calls: Counter[str] = Counter()
            self.failures: Counter[str] = Counter()

    @hookimpl
    def s3pool_task_completed(self, task: Any) -> None:
        self._record(task, failed=False)

    @hookimpl
    def s3pool_task_error(self, task: Any) -> None:
        self._record(task, failed=not task.expected)  # an expected answer (exists() on a missing key) is no failure

    def _record(self, task: Any, failed: bool) -> None:
        finished = task.finished_at
        duration = None if finished is None else max(0.0, finished - task.created_at)
        with self._lock:
            self.calls[task.name] += 1
            if failed:
                self.failures[task.name] += 1
            if duration is not None:
                self.durations.add(duration)

    def snapshot(self) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
        """``(sketch as a dict, {task name: {"calls", "failures"}})``, consistent with each other."""
        with self._lock:
            sketch = sketch_to_dict(self.durations)
            operations = {
                name: {"calls": n, "failures": self.failures.get(name, 0)} for name, n in sorted(self.calls.items())
            }
        return sketch, operations


def sketch_to_dict(sketch: QuantileSketch) -> dict[str, Any]:
    """A JSON-ready form of ``sketch`` that :func:`sketch_from_dict` turns back into an equal sketch."""
    return {
        "alpha": sketch.alpha,
        "count": sketch.count,
        "total": sketch.total,
        "minimum": sketch.minimum if sketch.count else None,
        "maximum": sketch.maximum if sketch.count else None,
        "zeros": sketch.zeros,
        "buckets": {str(index): n for index, n in sorted(sketch.bucket_counts.items())},
    }


def sketch_from_dict(data: Mapping[str, Any]) -> QuantileSketch:
    """The sketch :func:`sketch_to_dict` described; raises ``ValueError`` on a malformed one."""
    try:
        sketch = QuantileSketch(alpha=float(data["alpha"]))
        sketch.count = int(data["count"])
        sketch.total = float(data["total"])
        sketch.zeros = int(data["zeros"])
        sketch.minimum = math.inf if data["minimum"] is None else float(data["minimum"])
        sketch.maximum = -math.inf if data["maximum"] is None else float(data["maximum"])
        sketch.bucket_counts = {int(index): int(n) for index, n in data["buckets"].items()}
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a call-time sketch: {error!r}") from None
    return sketch


class ProcessReport:
    """What this process's attached pools did; :meth:`as_dict` is the report's content."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.started = time.time()
        self.recorder = CallRecorder()
        self._lock = threading.Lock()
        self._pools: list[tuple[Any, dict[str, int]]] = []
        self._fork_baselines: list[dict[str, int]] = []

    def attach(self, pool: Any) -> None:
        """Count ``pool``'s work from now on (idempotent)."""
        with self._lock:
            if any(known is pool for known, _ in self._pools):
                return
            self._pools.append((pool, _counts(pool)))
        if not pool.plugin_manager.is_registered(self.recorder):
            pool.plugin_manager.register(self.recorder, name="s3pool-report")

    def before_fork(self) -> None:
        """In the parent, just before a fork: remember the counts the child starts from."""
        with self._lock:
            self._fork_baselines = [_counts(pool) for pool, _ in self._pools]

    def restart_in_child(self) -> None:
        """After a fork, in the child: its report starts from zero (counts from the fork on).

        Takes no lock (another thread of the parent may have held one at the
        fork) and calls no pool: the locks are replaced, the baselines were
        taken by :meth:`before_fork`.
        """
        self.pid = os.getpid()
        self.started = time.time()
        self._lock = threading.Lock()
        self.recorder._lock = threading.Lock()
        self.recorder.reset()
        baselines = self._fork_baselines
        self._pools = [
            (pool, baselines[index] if index < len(baselines) else old) for index, (pool, old) in enumerate(self._pools)
        ]

    def as_dict(self) -> dict[str, Any]:
        """The report: counts since each pool was attached (or since the fork), call times, peaks."""
        with self._lock:
            pools = list(self._pools)
        totals: Counter[str] = Counter()
        described = []
        for pool, baseline in pools:
            stats = pool.stats()
            now = _counts(pool)
            for name in (*_COUNTED, *_JUDGED):
                totals[name] += now[name] - baseline.get(name, 0)
            described.append(
                {
                    "name": pool.config.name,
                    "limit": stats.limit,
                    "peak_active": stats.peak_active,
                    "closed": stats.closed,
                    "adaptive": _adaptive(pool),
                }
            )
        sketch, operations = self.recorder.snapshot()
        return {
            "format": FORMAT,
            "pid": self.pid,
            "started": self.started,
            "ended": time.time(),
            "calls": totals["processed"],
            "succeeded": totals["succeeded"],
            "failures": totals["errors"],
            "cancelled": totals["cancelled"],
            "retries": totals["retries"],
            "throttles": totals["throttled"],
            "throttles_caused": totals["throttled_caused"],
            "throttles_ambient": totals["throttled_ambient"],
            "nested": totals["nested"],
            "peak_active": max((pool["peak_active"] for pool in described), default=0),
            "limit": max((pool["limit"] for pool in described), default=None),
            "adaptive": merge_adaptive([pool["adaptive"] for pool in described]),
            "pools": described,
            "operations": operations,
            "call_time": sketch,
        }


def _adaptive(pool: Any) -> dict[str, Any] | None:
    """What an auto pool's limit did: the range it moved in, its changes, what is paced now and the
    slowest pace it set (``min_rate``, attempts per second of the pool or any partition; None: never paced)."""
    if pool.auto_tuning is None:
        return None
    history = pool.limit_history()
    limits = [pool.auto_tuning.start, *(change.new for change in history if change.partition is None)]
    paced = {name: rate for name, (_, rate) in pool.partition_limits().items() if rate is not None}
    rate = next((change.new_rate for change in reversed(history) if change.partition is None), None)
    if rate is not None:
        paced["(pool)"] = rate
    return {
        "changes": len(history),
        "throttling": sum(1 for change in history if change.reason == "throttling"),
        "min_limit": min(limits),
        "max_limit": max(limits),
        "paced": {name: round(value, 1) for name, value in sorted(paced.items())},
        "min_rate": min((change.new_rate for change in history if change.new_rate is not None), default=None),
    }


def merge_adaptive(parts: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The ``adaptive`` figures of several pools or processes as one (None if none was on auto)."""
    present = [part for part in parts if part]
    if not present:
        return None
    rates = [float(part["min_rate"]) for part in present if part.get("min_rate") is not None]
    paced: dict[str, float] = {}
    for part in present:
        for name, rate in part.get("paced", {}).items():
            paced[name] = max(rate, paced.get(name, 0.0))
    return {
        "changes": sum(int(part["changes"]) for part in present),
        "throttling": sum(int(part["throttling"]) for part in present),
        "min_limit": min(int(part["min_limit"]) for part in present),
        "max_limit": max(int(part["max_limit"]) for part in present),
        "paced": dict(sorted(paced.items())),
        "min_rate": min(rates, default=None),
    }


def _counts(pool: Any) -> dict[str, int]:
    stats = pool.stats()
    return {name: int(getattr(stats, name) or 0) for name in (*_COUNTED, *_JUDGED)}


_state_lock = threading.Lock()
_state: ProcessReport | None = None
_target: str | None = None
_write_lock = threading.RLock()
"""Held across a report's snapshot and its replace: writes land in the order they were taken."""
_exiting = False
"""Set by the exit write: a refresh after it would replace the final report with an older one."""
_refresh_every: float | None = None


def report_path(target: str, pid: int | None = None) -> Path:
    """Where this process writes for ``S3POOL_REPORT=target`` (see the module docstring)."""
    pid = os.getpid() if pid is None else pid
    if os.path.isdir(target):
        return Path(target) / f"{FILE_PREFIX}{pid}.json"
    return Path(target.replace("{pid}", str(pid)))


def attach_from_environment(pool: Any, environ: Mapping[str, str] | None = None) -> ProcessReport | None:
    """If ``S3POOL_REPORT`` is set, count ``pool``'s work into this process's report, written at exit.

    Called by :func:`~s3pool_plugins.core.environment.default_pool` for the
    pool it builds; returns the process's report, or None when the variable
    is unset or empty.
    """
    global _state, _target
    environ = os.environ if environ is None else environ
    target = environ.get(REPORT_VARIABLE, "").strip()
    if not target:
        return None
    with _state_lock:
        first = _state is None
        if _state is None:
            _state = ProcessReport()
        _target = target
        state = _state
    state.attach(pool)
    if first:
        atexit.register(_write_at_exit)
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
        _start_refreshing(environ.get(REFRESH_VARIABLE, ""))
    _finalize_with_multiprocessing()
    return state


def _start_refreshing(setting: str) -> None:
    """Rewrite the report every ``setting`` seconds on a daemon thread (nothing for a bad or empty value).

    ``s3pool run`` asks for refreshes only while it draws its status line on
    the terminal this process shares: this package's warnings then get a line
    of their own (:mod:`s3pool_plugins.core.terminal_log`).
    """
    try:
        every = float(setting)
    except ValueError:
        return
    if not math.isfinite(every) or every <= 0:
        return
    keep_warnings_off_the_status_line()
    global _refresh_every
    _refresh_every = max(every, 0.1)
    _refresh_thread(_refresh_every)


def _refresh_thread(every: float) -> None:
    def refresh() -> None:
        while True:
            time.sleep(every)
            with _write_lock:
                if _exiting:
                    return
                write_report()  # never raises

    threading.Thread(target=refresh, name="s3pool-report-refresh", daemon=True).start()


def _write_at_exit() -> Path | None:
    """The final write: after any refresh in progress, and no refresh after it."""
    global _exiting
    with _write_lock:
        _exiting = True
        return write_report()


def write_report() -> Path | None:
    """Write this process's report now (again: the file is replaced); returns its path, None if none.

    Never raises: a report that cannot be written is announced on stderr.
    """
    with _state_lock:
        state, target = _state, _target
    if state is None or target is None or state.pid != os.getpid():
        return None
    with _write_lock:
        return _write(state, target)


def _write(state: ProcessReport, target: str) -> Path | None:
    try:
        path = report_path(target)
        content = json.dumps(state.as_dict(), indent=1)
        folder = path.parent if str(path.parent) else Path(".")
        handle, temporary = tempfile.mkstemp(prefix=".s3pool-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(content)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
        return path
    except Exception as error:
        print(f"s3pool: could not write the run report for {REPORT_VARIABLE}={target!r}: {error}", file=sys.stderr)
        return None


def _before_fork() -> None:
    state = _state
    if state is not None:
        state.before_fork()


def _after_fork_in_child() -> None:
    global _state_lock, _write_lock
    _state_lock = threading.Lock()
    _write_lock = threading.RLock()
    state = _state
    if state is not None:
        state.restart_in_child()
        _finalize_with_multiprocessing(after_fork=True)
        if _refresh_every is not None and not _exiting:  # threads do not survive a fork
            _refresh_thread(_refresh_every)


_finalized_pid: int | None = None


def _finalize_with_multiprocessing(after_fork: bool = False) -> None:
    """Also write from ``multiprocessing``'s exit finalizers (its children end with ``os._exit``).

    Only when ``multiprocessing`` is already in use: this never imports it.
    Right after a fork ``multiprocessing`` clears its finalizers before the
    child runs, so the registration is deferred to its after-fork callbacks.
    """
    global _finalized_pid
    util = sys.modules.get("multiprocessing.util")
    if util is None or _finalized_pid == os.getpid():
        return
    _finalized_pid = os.getpid()
    if after_fork:
        util.register_after_fork(_Rearm.instance, _Rearm.finalize)
    else:
        util.Finalize(None, write_report, exitpriority=100)


class _Rearm:
    """A weak-referenceable anchor for ``multiprocessing.util.register_after_fork``."""

    instance: _Rearm

    @staticmethod
    def finalize(_: object) -> None:
        util = sys.modules.get("multiprocessing.util")
        if util is not None:
            util.Finalize(None, write_report, exitpriority=100)


_Rearm.instance = _Rearm()


def load_reports(paths: Iterable[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Read report files: ``(reports, problems)``; unreadable or foreign files become problems."""
    reports: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.append(f"{path.name}: {error}")
            continue
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            problems.append(f"{path.name}: not an {FORMAT} report")
            continue
        reports.append(data)
    return reports, problems


_SUMMED = (
    "calls",
    "succeeded",
    "failures",
    "cancelled",
    "retries",
    "throttles",
    "throttles_caused",
    "throttles_ambient",
    "nested",
)


def merge_reports(reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One report for several processes: counts add up, call times merge exactly (as sketches).

    ``peak_active`` is the highest of any one process (each process has its
    own pool and limit); ``processes`` lists each process's own figures.
    """
    reports = sorted(reports, key=lambda report: (report.get("started", 0), report.get("pid", 0)))
    sketch = QuantileSketch(alpha=_ALPHA)
    operations: dict[str, dict[str, int]] = {}
    totals: Counter[str] = Counter()
    for report in reports:
        for name in _SUMMED:
            totals[name] += int(report.get(name, 0))
        sketch.merge(sketch_from_dict(report["call_time"]))
        for name, counts in report.get("operations", {}).items():
            merged = operations.setdefault(name, {"calls": 0, "failures": 0})
            merged["calls"] += int(counts.get("calls", 0))
            merged["failures"] += int(counts.get("failures", 0))
    limits = [report["limit"] for report in reports if report.get("limit") is not None]
    return {
        "format": FORMAT,
        "processes": [
            {name: report.get(name) for name in ("pid", "calls", "failures", "retries", "throttles", "peak_active")}
            for report in reports
        ],
        **dict(totals),
        "peak_active": max((int(report.get("peak_active", 0)) for report in reports), default=0),
        "limit": max(limits, default=None),
        "adaptive": merge_adaptive([report.get("adaptive") for report in reports]),
        "operations": dict(sorted(operations.items())),
        "call_time": sketch_to_dict(sketch),
    }


def call_time_summary(sketch_data: Mapping[str, Any]) -> dict[str, float | None]:
    """``count``, ``mean``, ``p50``, ``p95``, ``p99`` and ``max`` (seconds) of a sketch dict."""
    sketch = sketch_from_dict(sketch_data)
    return {
        "count": sketch.count,
        "mean": sketch.mean,
        "p50": sketch.quantile(0.50),
        "p95": sketch.quantile(0.95),
        "p99": sketch.quantile(0.99),
        "max": sketch.maximum if sketch.count else None,
    }
