"""Benchmark: the per-call overhead the pool adds to botocore and aiobotocore, without a network.

Run from the repository root::

    python benchmarks/bench_botocore.py              # full run (about 1 minute)
    python benchmarks/bench_botocore.py --quick      # smoke run (about 10 s)
    python benchmarks/bench_botocore.py --json out.json --strict
    python benchmarks/bench_botocore.py --clients 4  # four clients per variant (about 3.5 minutes)
    python benchmarks/bench_botocore.py --breakdown  # the pool's steps timed alone, hot and in situ
    python benchmarks/bench_botocore.py --profile    # the pooled paths under cProfile

No request leaves the process: a ``before-send.s3`` handler on each client's
``meta.events`` answers every request with a canned ``AWSResponse`` (status
200, ``x-amz-request-id``, ``ETag``, an empty body), so botocore still builds,
signs and parses every call but opens no socket. The endpoint
(``http://127.0.0.1:9``) is never contacted and the credentials are fake.
Every timed run checks that the handler answered exactly its calls and that
the pool settled them all, so a broken setup cannot report flattering numbers.

What it measures, calls made one after the other on one thread (sync) or
one event loop (async), so that the figure is the cost *per call*:

1. sync: PutObject (1 KiB body) and HeadObject through a bare boto3 S3
   client (the baseline), versus a client made by a ``boto3.Session`` after
   ``install(session, pool)`` (the pooled client class: ``creating-client-class``
   mixin plus events), versus an existing client after ``install(client, pool)``
   (events only; a ``weakref.finalize`` per call settles abandoned calls);
2. async: the same through aiobotocore: a bare client versus one made by an
   ``AioSession`` after ``install(session, pool)``, versus an existing async
   client after ``install(client, pool)`` (events only; also a done-callback
   on the current asyncio task per call).

Installed clients run without botocore's own retry handler (the pool owns
retries), bare clients with it: that is what a user gets, and the target is
judged against the bare client. A reference variant, a bare client whose
retry handler was removed, shows what that handler costs; "the pool's own
cost" is a pooled variant's time per call minus the reference's. Every
client has ``max_pool_connections`` = the pool's concurrency (10), so
installing changes nothing else. The pool is built with
``load_entrypoints=False``: no plugin implements any hook, so the figures
are those of the adapter and the core alone.

Runs are short (100 calls) and repeated in many rounds; the order of the
variants alternates from one round to the next (bare, reference, session,
client; then the reverse) so that slow phases of a noisy machine hit every
variant. The figure reported for each variant is its best round (noise only
ever makes a run slower); the median, and the median of the per-round
paired ratios, are shown as well. The target is judged on the ratio of the
best rounds: a pooled client keeps at least 0.97 of the bare client's calls
per second (the pool adds at most 3% to botocore's own per-call cost).
"+us/call" is the difference of the best rounds' times per call.

Identical clients are not equally fast: five bare clients built one after
the other in one process differ by up to 5 us per call in their best rounds
(and more in their medians), as much as the target's whole budget
(3 % of about 430 us). ``--clients K`` builds K clients of every variant
(one set after the other, all timed in every round) and takes a variant's
time in a round as the mean over its clients, so no variant's verdict rests
on the layout of one client object.

``--breakdown`` times the adapter's handlers called directly (no botocore in
between), each step both in a tight loop ("hot") and right after a real
botocore call ("in situ"). In situ is what a real call pays: code that runs
once per 400 us of botocore starts with cold caches and costs two to three
times its tight-loop figure. ``--profile`` runs the pooled variants under
cProfile and lists the pool's own functions with their time per call;
cProfile's own cost per function call inflates every figure, so read the
shares, not the absolute values.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import cProfile
import gc
import importlib
import itertools
import json
import os
import pstats
import statistics
import sys
import time
import types
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiobotocore
import boto3
import botocore
from aiobotocore.awsrequest import AioAWSResponse
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.config import Config


def _import_package() -> Any:
    """Import s3pool_plugins, from the installed package or from this checkout."""
    try:
        return importlib.import_module("s3pool_plugins")
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        return importlib.import_module("s3pool_plugins")


s3pool_plugins = _import_package()
OperationsPool = s3pool_plugins.OperationsPool
mixins = importlib.import_module("s3pool_plugins.adapters.botocore.mixins")

CONCURRENCY = 10
TARGET = 0.97
ENDPOINT = "http://127.0.0.1:9"  # the discard port; never contacted
CREDENTIALS = {
    "aws_access_key_id": "AKIDS3POOLBENCHMARK0",
    "aws_secret_access_key": "not-a-real-secret-key-for-the-benchmark",
    "region_name": "us-east-1",
}
BUCKET = "bench-bucket"
KEY = "bench/object-{:07d}.bin"  # every call gets a key of its own, as in real work
BODY = b"x" * 1024
RESPONSE_HEADERS = {
    "x-amz-request-id": "3B3C7C725673C630",
    "x-amz-id-2": "bench/host/id",
    "ETag": '"f1c9645dbc14efddc7d8a322685f26eb"',
    "Content-Length": "0",
    "Server": "AmazonS3",
}
OPERATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "PutObject": ("put_object", {"Bucket": BUCKET, "Body": BODY}),
    "HeadObject": ("head_object", {"Bucket": BUCKET}),
}
BARE, REFERENCE, SESSION, CLIENT = "bare", "reference", "session", "client"
BOTOCORE_RETRY_HANDLER = "retry-config-s3"
VARIANT_NAMES = {
    ("sync", BARE): "boto3 client, bare (baseline)",
    ("sync", REFERENCE): "bare, no botocore retry handler (ref.)",
    ("sync", SESSION): "install(boto3.Session): pooled class",
    ("sync", CLIENT): "install(client): events only",
    ("async", BARE): "aiobotocore client, bare (baseline)",
    ("async", REFERENCE): "bare, no botocore retry handler (ref.)",
    ("async", SESSION): "install(AioSession): pooled class",
    ("async", CLIENT): "install(client): events only",
}


# ------------------------------------------------------------ canned answers


class _SyncRaw:
    """The raw body of a canned sync response: empty (``AWSResponse.content`` joins ``stream()``)."""

    __slots__ = ()

    def stream(self, **_: Any) -> Any:
        return iter(())


class _AsyncRaw:
    """The raw body of a canned async response: empty (``AioAWSResponse.content`` awaits ``read()``)."""

    __slots__ = ()

    async def read(self, *_: Any) -> bytes:
        return b""


class CannedResponses:
    """A ``before-send`` handler: answers every request with a 200 and counts them.

    A non-None return value from ``before-send`` replaces the HTTP send in
    botocore's and aiobotocore's endpoints (``_do_get_response``).
    aiobotocore accepts sync handlers; its endpoint awaits the response's
    ``content``, hence :class:`AioAWSResponse` with an async ``read()``.
    """

    def __init__(self, is_async: bool) -> None:
        self.count = 0
        self._response_class: type = AioAWSResponse if is_async else AWSResponse
        self._raw: Any = _AsyncRaw() if is_async else _SyncRaw()

    def __call__(self, request: Any, **_: Any) -> Any:
        self.count += 1
        return self._response_class(request.url, 200, HeadersDict(RESPONSE_HEADERS), self._raw)


class Variant:
    """One client under test, with its canned-response counter and its pool (None for bare)."""

    def __init__(self, kind: str, path: str, client: Any, pool: Any) -> None:
        self.kind = kind
        self.path = path
        self.name = VARIANT_NAMES[(kind, path)]
        self.client = client
        self.pool = pool
        self.responses = CannedResponses(is_async=kind == "async")
        client.meta.events.register("before-send.s3", self.responses, unique_id="s3pool-bench-canned")
        self._keys = 0

    def next_params(self, operation: str, n: int) -> tuple[Any, list[dict[str, Any]]]:
        """The client method and the parameters of the next ``n`` calls (built before timing)."""
        method, template = OPERATIONS[operation]
        first, self._keys = self._keys, self._keys + n
        return getattr(self.client, method), [{**template, "Key": KEY.format(i)} for i in range(first, first + n)]


def make_pool() -> Any:
    return OperationsPool(load_entrypoints=False, concurrency=CONCURRENCY, name="bench-botocore")


def make_sync_variants(pool: Any) -> list[Variant]:
    config = Config(max_pool_connections=CONCURRENCY)
    bare = boto3.Session(**CREDENTIALS).client("s3", endpoint_url=ENDPOINT, config=config)
    reference = boto3.Session(**CREDENTIALS).client("s3", endpoint_url=ENDPOINT, config=config)
    reference.meta.events.unregister("needs-retry.s3", unique_id=BOTOCORE_RETRY_HANDLER)
    installed_session = boto3.Session(**CREDENTIALS)
    s3pool_plugins.install(installed_session, pool)
    pooled = installed_session.client("s3", endpoint_url=ENDPOINT, config=config)
    events_only = boto3.Session(**CREDENTIALS).client("s3", endpoint_url=ENDPOINT, config=config)
    s3pool_plugins.install(events_only, pool)
    if not isinstance(pooled, mixins.PooledClientMixin):
        raise RuntimeError("the client of the installed session is not a pooled client class")
    return [
        Variant("sync", BARE, bare, None),
        Variant("sync", REFERENCE, reference, None),
        Variant("sync", SESSION, pooled, pool),
        Variant("sync", CLIENT, events_only, pool),
    ]


async def make_async_variants(pool: Any, stack: contextlib.AsyncExitStack) -> list[Variant]:
    options = {"endpoint_url": ENDPOINT, "config": AioConfig(max_pool_connections=CONCURRENCY), **CREDENTIALS}
    bare = await stack.enter_async_context(AioSession().create_client("s3", **options))
    reference = await stack.enter_async_context(AioSession().create_client("s3", **options))
    reference.meta.events.unregister("needs-retry.s3", unique_id=BOTOCORE_RETRY_HANDLER)
    installed_session = AioSession()
    s3pool_plugins.install(installed_session, pool)
    pooled = await stack.enter_async_context(installed_session.create_client("s3", **options))
    events_only = await stack.enter_async_context(AioSession().create_client("s3", **options))
    s3pool_plugins.install(events_only, pool)
    if not isinstance(pooled, mixins.AsyncPooledClientMixin):
        raise RuntimeError("the client of the installed AioSession is not a pooled client class")
    return [
        Variant("async", BARE, bare, None),
        Variant("async", REFERENCE, reference, None),
        Variant("async", SESSION, pooled, pool),
        Variant("async", CLIENT, events_only, pool),
    ]


# ------------------------------------------------------------------- timing


def _calls_sync(variant: Variant, operation: str, n: int) -> float:
    call, batch = variant.next_params(operation, n)
    start = time.perf_counter()
    for params in batch:
        call(**params)
    return time.perf_counter() - start


async def _calls_async(variant: Variant, operation: str, n: int) -> float:
    call, batch = variant.next_params(operation, n)
    start = time.perf_counter()
    for params in batch:
        await call(**params)
    return time.perf_counter() - start


class Runner:
    """Runs ``n`` sequential calls of one variant and checks what happened."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop

    def calls(self, variant: Variant, operation: str, n: int) -> float:
        if variant.kind == "async":
            assert self.loop is not None
            return self.loop.run_until_complete(_calls_async(variant, operation, n))
        return _calls_sync(variant, operation, n)

    def timed(self, variant: Variant, operation: str, n: int) -> float:
        gc.collect()
        answered = variant.responses.count
        before = variant.pool.stats() if variant.pool is not None else None
        elapsed = self.calls(variant, operation, n)
        if variant.responses.count - answered != n:
            raise RuntimeError(
                f"{variant.kind} {variant.name}: {variant.responses.count - answered} canned responses for {n} calls"
            )
        if before is not None:
            after = variant.pool.stats()
            succeeded = after.succeeded - before.succeeded
            if succeeded != n or after.errors != before.errors or after.active or after.pending or after.queued:
                raise RuntimeError(f"{variant.kind} {variant.name}: the pool settled {succeeded} of {n} calls: {after}")
        return elapsed


def run_rounds(runner: Runner, variants: list[Variant], operation: str, n: int, rounds: int) -> dict[str, Any]:
    """Time every client ``rounds`` times, alternating their order each round.

    With several clients per variant (``--clients``), a variant's time in a
    round is the mean over its clients.
    """
    samples: dict[str, list[float]] = {v.path: [] for v in variants}
    clients = {path: sum(1 for v in variants if v.path == path) for path in samples}
    for index in range(rounds):
        order = variants if index % 2 == 0 else list(reversed(variants))
        spent = dict.fromkeys(samples, 0.0)
        for variant in order:
            spent[variant.path] += runner.timed(variant, operation, n)
        for path, total in spent.items():
            samples[path].append(total / clients[path])
    results: dict[str, Any] = {}
    for variant in variants:
        if variant.path in results:
            continue
        times = samples[variant.path]
        results[variant.path] = {
            "variant": variant.name,
            "n": n,
            "clients": clients[variant.path],
            "seconds": times,
            "best_calls_per_s": n / min(times),
            "median_calls_per_s": n / statistics.median(times),
            "best_us_per_call": min(times) / n * 1e6,
        }
    base = results[BARE]
    reference = results.get(REFERENCE)
    for path, result in results.items():
        if path == BARE:
            continue
        result["ratio_best"] = result["best_calls_per_s"] / base["best_calls_per_s"]
        result["ratio_median_paired"] = statistics.median(b / p for b, p in zip(base["seconds"], result["seconds"]))
        result["overhead_us_per_call"] = result["best_us_per_call"] - base["best_us_per_call"]
        if path in (SESSION, CLIENT):
            result["target"] = TARGET
            result["target_met"] = result["ratio_best"] >= TARGET
            if reference is not None:
                result["us_per_call_over_reference"] = result["best_us_per_call"] - reference["best_us_per_call"]
    return results


def warm_up(runner: Runner, variants: list[Variant], n: int) -> None:
    for operation in OPERATIONS:
        for variant in variants:
            runner.timed(variant, operation, n)


def bench_section(runner: Runner, variants: list[Variant], n: int, rounds: int, warm: int) -> dict[str, Any]:
    warm_up(runner, variants, warm)
    return {operation: run_rounds(runner, variants, operation, n, rounds) for operation in OPERATIONS}


# ------------------------------------------------------------------ profile


def profile_section(runner: Runner, variants: list[Variant], n: int) -> dict[str, Any]:
    """cProfile ``n`` HeadObject calls of each pooled variant; the pool's functions per call."""
    warm_up(runner, variants, max(20, n // 10))
    package = str(Path(s3pool_plugins.__file__).resolve().parent)
    report: dict[str, Any] = {}
    for variant in variants:
        profiler = cProfile.Profile()
        gc.collect()
        profiler.enable()
        runner.calls(variant, "HeadObject", n)
        profiler.disable()
        stats = pstats.Stats(profiler)
        total = stats.total_tt  # type: ignore[attr-defined]
        rows = []
        for (filename, line, function), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            if variant.pool is not None and filename.startswith(package):
                where = f"{Path(filename).relative_to(package)}:{line}({function})"
                rows.append((where, ncalls / n, tottime / n * 1e6, cumtime / n * 1e6))
        rows.sort(key=lambda row: row[2], reverse=True)
        report[variant.path] = {
            "variant": variant.name,
            "n": n,
            "profiled_us_per_call": total / n * 1e6,
            "pool_tottime_us_per_call": sum(row[2] for row in rows),
            "functions": [
                {"function": w, "calls_per_call": c, "tottime_us_per_call": t, "cumtime_us_per_call": cu}
                for w, c, t, cu in rows
            ],
        }
    return report


def print_profile(title: str, report: dict[str, Any], top: int) -> None:
    print(f"\n{title}")
    bare = report[BARE]["profiled_us_per_call"]
    reference = report[REFERENCE]["profiled_us_per_call"] if REFERENCE in report else float("nan")
    for path, r in report.items():
        if path in (BARE, REFERENCE):
            continue
        print(
            f"\n  {r['variant']}: {r['profiled_us_per_call']:.0f} us/call under cProfile "
            f"(bare {bare:.0f}, reference {reference:.0f}), of which s3pool_plugins' own code "
            f"{r['pool_tottime_us_per_call']:.1f} us"
        )
        header = f"    {'function (s3pool_plugins/...)':<64} {'calls':>5} {'own us':>7} {'cum us':>7}"
        print(header)
        print("    " + "-" * (len(header) - 4))
        for row in r["functions"][:top]:
            print(
                f"    {row['function']:<64} {row['calls_per_call']:>5.1f} "
                f"{row['tottime_us_per_call']:>7.2f} {row['cumtime_us_per_call']:>7.2f}"
            )


# ---------------------------------------------------------------- breakdown


class _Guard:
    """Stands in for the adapter's per-call guard object (a weakref target)."""

    __slots__ = ("__weakref__",)


def _settle_nothing(_: object) -> None:
    return None


def _noop_handler(**_: Any) -> None:
    return None


class _Requests:
    """The parameters and URL of a HeadObject call on a new key, each time it is called."""

    def __init__(self) -> None:
        self._count = itertools.count()

    def __call__(self) -> tuple[dict[str, Any], str]:
        key = KEY.format(next(self._count))
        return {"Bucket": BUCKET, "Key": key}, f"{ENDPOINT}/{BUCKET}/{key}"


def _median_us(samples: list[float], overhead: float = 0.0) -> float:
    return statistics.median(samples) * 1e6 - overhead


def _time_step(step: Callable[[], Any], n: int, between: Callable[[], Any] | None, overhead: float) -> float:
    """Median microseconds of one ``step()``; with ``between``, it runs first each time, untimed."""
    clock = time.perf_counter
    samples = []
    for _ in range(n):
        if between is not None:
            between()
        start = clock()
        step()
        samples.append(clock() - start)
    return _median_us(samples, overhead)


async def _time_step_async(
    step: Callable[[], Any], n: int, between: Callable[[], Any] | None, overhead: float
) -> float:
    clock = time.perf_counter
    samples = []
    for _ in range(n):
        if between is not None:
            await between()
        start = clock()
        await step()
        samples.append(clock() - start)
    return _median_us(samples, overhead)


def _wrap_timed(name: str, handler: Callable[..., Any], into: dict[str, list[float]]) -> Callable[..., Any]:
    samples = into.setdefault(name, [])
    clock = time.perf_counter

    def timed(**kwargs: Any) -> Any:
        start = clock()
        try:
            return handler(**kwargs)
        finally:
            samples.append(clock() - start)

    return timed


def _wrap_timed_async(name: str, handler: Callable[..., Any], into: dict[str, list[float]]) -> Callable[..., Any]:
    samples = into.setdefault(name, [])
    clock = time.perf_counter

    async def timed(**kwargs: Any) -> Any:
        start = clock()
        try:
            return await handler(**kwargs)
        finally:
            samples.append(clock() - start)

    return timed


_HANDLER_METHODS = ("before_call", "request_created", "needs_retry", "after_call")


def _timed_handlers(pool: Any, is_async: bool, into: dict[str, list[float]]) -> Any:
    """A ClientHandlers whose handler methods record how long each call took."""
    handlers = importlib.import_module("s3pool_plugins.adapters.botocore.handlers").ClientHandlers(pool)
    for name in _HANDLER_METHODS:
        if is_async and name == "request_created":
            handlers.request_created_async = _wrap_timed_async(name, handlers.request_created_async, into)
        else:
            setattr(handlers, name, _wrap_timed(name, getattr(handlers, name), into))
    return handlers


def breakdown(n_hot: int, n_cold: int) -> dict[str, Any]:
    """Microseconds per HeadObject call of the pool's work, hot (in a tight loop) and in situ.

    "In situ" times each step right after a real (canned) botocore call, so
    it starts with the caches botocore left behind, as it does in a real
    call: Python code that runs once per 400 us of other work costs two to
    three times its tight-loop figure. Every figure is the median of single
    timed steps, minus the cost of timing an empty step.
    """
    handlers_module = importlib.import_module("s3pool_plugins.adapters.botocore.handlers")
    classify = importlib.import_module("s3pool_plugins.adapters.botocore.classify")
    locks = importlib.import_module("s3pool_plugins.core.locks")
    enter_call, leave_call = handlers_module.enter_call, handlers_module.leave_call
    pool = make_pool()
    handlers = handlers_module.ClientHandlers(pool)
    bare = boto3.Session(**CREDENTIALS).client("s3", endpoint_url=ENDPOINT)
    bare.meta.events.register("before-send.s3", CannedResponses(is_async=False))
    model = bare.meta.service_model.operation_model("HeadObject")
    region = CREDENTIALS["region_name"]
    requests = _Requests()
    http = AWSResponse(ENDPOINT, 200, HeadersDict(RESPONSE_HEADERS), _SyncRaw())
    parsed = {"ResponseMetadata": {"HTTPStatusCode": 200, "RequestId": "3B3C7C725673C630"}, "ETag": "x"}
    response = (http, parsed)
    variable: contextvars.ContextVar[Any] = contextvars.ContextVar("bench", default=None)
    lock = locks.YieldingLock()

    def between() -> None:
        bare.head_object(**requests()[0])

    def skeleton() -> None:
        _params, url = requests()
        context: dict[str, Any] = {"client_region": region}
        types.SimpleNamespace(context=context, url=url)
        _ = {"context": context}

    def session_path() -> None:
        params, url = requests()
        call = handlers.begin("HeadObject", params, region, ENDPOINT)
        token = enter_call(call)
        context: dict[str, Any] = {"client_region": region}
        handlers.request_created_pooled(request=types.SimpleNamespace(context=context, url=url))
        handlers.needs_retry_pooled(
            response=response, caught_exception=None, request_dict={"context": context}, operation=model
        )
        leave_call(token)
        call.finish(None, parsed)

    def events_path() -> None:
        params, url = requests()
        context: dict[str, Any] = {"client_region": region}
        handlers.before_call(params=params, model=model, context=context)
        handlers.request_created(request=types.SimpleNamespace(context=context, url=url))
        handlers.needs_retry(
            response=response, caught_exception=None, request_dict={"context": context}, operation=model
        )
        handlers.after_call(http_response=http, parsed=parsed, model=model, context=context)

    fixed_params = requests()[0]

    def begin_finish() -> None:
        handlers.begin("HeadObject", fixed_params, region, ENDPOINT).finish(None, parsed)

    attempt_call = handlers.begin("HeadObject", fixed_params, region, ENDPOINT)

    def attempt() -> None:
        attempt_call.start_attempt()
        attempt_call.end_attempt()

    def finalizer() -> None:
        weakref.finalize(_Guard(), _settle_nothing, None).atexit = False

    def context_var() -> None:
        variable.reset(variable.set(None))

    def lock_round_trip() -> None:
        with lock:
            pass

    def error_of_200() -> None:
        classify.response_error("HeadObject", response)

    emitter = bare.meta.events
    after_call = {"http_response": http, "parsed": parsed, "model": model, "context": {}}
    retry = {"response": response, "caught_exception": None, "request_dict": {"context": {}}, "attempts": 1}

    def emit_after_call() -> None:
        emitter.emit("after-call.s3.HeadObject", **after_call)

    def emit_needs_retry() -> None:
        emitter.emit("needs-retry.s3.HeadObject", operation=model, **retry)

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("sync session path: begin, current call, 2 handlers, finish", session_path),
        ("sync events-only path: 4 handlers", events_path),
        ("  begin_call + finish (no attempt)", begin_finish),
        ("  start_attempt + end_attempt", attempt),
        ("  weakref.finalize on a new object (dropped)", finalizer),
        ("  ContextVar set + reset", context_var),
        ("  YieldingLock enter + exit (4 per call)", lock_round_trip),
        ("  response_error for a 200", error_of_200),
    ]
    results: dict[str, Any] = {"hot": {}, "in_situ": {}}
    for mode, n, around in (("hot", n_hot, None), ("in_situ", n_cold, between)):
        overhead = _time_step(lambda: None, n, around, 0.0)
        base = _time_step(skeleton, n, around, overhead)
        results[mode]["timer (empty step)"] = overhead
        for name, step in steps:
            value = _time_step(step, n, around, overhead)
            results[mode][name] = value - base if name.startswith("sync") else value
        emit_bare = _time_step(emit_after_call, n, around, overhead)
        emitter.register_first("after-call.s3", _noop_handler, unique_id="s3pool-bench-noop")
        results[mode]["botocore: dispatch of one more handler"] = (
            _time_step(emit_after_call, n, around, overhead) - emit_bare
        )
        emitter.unregister("after-call.s3", unique_id="s3pool-bench-noop")
        with_retry = _time_step(emit_needs_retry, n, around, overhead)
        emitter.unregister("needs-retry.s3", unique_id=BOTOCORE_RETRY_HANDLER)
        results[mode]["botocore: its own retry handler (bare clients)"] = with_retry - _time_step(
            emit_needs_retry, n, around, overhead
        )
        restore = importlib.import_module("s3pool_plugins.adapters.botocore.retries").restore_botocore_retries
        restore(bare, is_async=False)
    attempt_call.finish()

    # The adapter's handlers as botocore calls them, each timed by a wrapper.
    per_event: dict[str, list[float]] = {}
    client = boto3.Session(**CREDENTIALS).client("s3", endpoint_url=ENDPOINT)
    client.meta.events.register("before-send.s3", CannedResponses(is_async=False))
    _timed_handlers(pool, False, per_event).register(client.meta.events, "s3", is_async=False)
    for _ in range(n_cold):
        client.head_object(**requests()[0])
    results["in_situ_per_event_sync"] = {name: _median_us(samples) for name, samples in per_event.items()}

    async def run_async() -> None:
        async_handlers = handlers_module.ClientHandlers(pool)
        async_handlers.is_async = True
        options = {"endpoint_url": ENDPOINT, **CREDENTIALS}
        async with AioSession().create_client("s3", **options) as aio_bare:
            aio_bare.meta.events.register("before-send.s3", CannedResponses(is_async=True))

            async def aio_between() -> None:
                await aio_bare.head_object(**requests()[0])

            async def skeleton_async() -> None:
                skeleton()

            async def session_path_async() -> None:
                params, url = requests()
                call = async_handlers.begin("HeadObject", params, region, ENDPOINT)
                token = enter_call(call)
                context: dict[str, Any] = {"client_region": region}
                await async_handlers.request_created_pooled_async(
                    request=types.SimpleNamespace(context=context, url=url)
                )
                async_handlers.needs_retry_pooled(
                    response=response, caught_exception=None, request_dict={"context": context}, operation=model
                )
                leave_call(token)
                call.finish(None, parsed)

            async def events_path_async() -> None:
                params, url = requests()
                context: dict[str, Any] = {"client_region": region}
                async_handlers.before_call(params=params, model=model, context=context)
                await async_handlers.request_created_async(request=types.SimpleNamespace(context=context, url=url))
                async_handlers.needs_retry(
                    response=response, caught_exception=None, request_dict={"context": context}, operation=model
                )
                async_handlers.after_call(http_response=http, parsed=parsed, model=model, context=context)

            aio_emitter = aio_bare.meta.events

            async def aio_emit_after_call() -> None:
                await aio_emitter.emit("after-call.s3.HeadObject", **after_call)

            async def empty() -> None:
                return None

            for mode, n, around in (("hot", n_hot, None), ("in_situ", n_cold, aio_between)):
                overhead = await _time_step_async(empty, n, around, 0.0)
                base = await _time_step_async(skeleton_async, n, around, overhead)
                results[mode]["async session path: begin, current call, 2 handlers, finish"] = (
                    await _time_step_async(session_path_async, n, around, overhead) - base
                )
                results[mode]["async events-only path: 4 handlers"] = (
                    await _time_step_async(events_path_async, n, around, overhead) - base
                )
                emit_bare = await _time_step_async(aio_emit_after_call, n, around, overhead)
                aio_emitter.register_first("after-call.s3", _noop_handler, unique_id="s3pool-bench-noop")
                results[mode]["aiobotocore: dispatch of one more (sync) handler"] = (
                    await _time_step_async(aio_emit_after_call, n, around, overhead) - emit_bare
                )
                aio_emitter.unregister("after-call.s3", unique_id="s3pool-bench-noop")

        per_event_async: dict[str, list[float]] = {}
        async with AioSession().create_client("s3", **options) as aio_client:
            aio_client.meta.events.register("before-send.s3", CannedResponses(is_async=True))
            _timed_handlers(pool, True, per_event_async).register(aio_client.meta.events, "s3", is_async=True)
            for _ in range(n_cold):
                await aio_client.head_object(**requests()[0])
        results["in_situ_per_event_async"] = {name: _median_us(s) for name, s in per_event_async.items()}

    asyncio.run(run_async())
    pool.shutdown(wait=True)
    return results


def print_breakdown(results: dict[str, Any]) -> None:
    print("\nThe pool's work per HeadObject call, timed alone (median us of single steps)")
    print(f"  {'step':<58} {'hot':>7} {'in situ':>8}")
    print("  " + "-" * 75)
    for name, hot in results["hot"].items():
        print(f"  {name:<58} {hot:>7.2f} {results['in_situ'][name]:>8.2f}")
    print("  (the paths are net of a skeleton that builds the same dicts without the pool)")
    for kind in ("sync", "async"):
        per_event = results[f"in_situ_per_event_{kind}"]
        total = sum(per_event.values())
        text = ", ".join(f"{name} {value:.1f}" for name, value in per_event.items())
        print(f"  {kind} events-only client, each handler as botocore calls it: {text}; sum {total:.1f} us")


# ------------------------------------------------------------------- report


def print_section(title: str, results: dict[str, Any]) -> None:
    print(f"\n{title}")
    header = (
        f"  {'operation':<10} {'variant':<38} {'best calls/s':>12} {'median/s':>9} {'us/call':>8} "
        f"{'ratio(best)':>11} {'ratio(med)':>10} {'+us/call':>8}  target"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    for operation, variants in results.items():
        for r in variants.values():
            ratio = f"{r['ratio_best']:>11.3f}" if "ratio_best" in r else f"{'1.000':>11}"
            paired = f"{r['ratio_median_paired']:>10.3f}" if "ratio_median_paired" in r else f"{'':>10}"
            overhead = f"{r['overhead_us_per_call']:>+8.1f}" if "overhead_us_per_call" in r else f"{'':>8}"
            target = f"{'MET' if r['target_met'] else 'MISSED'} (>= {r['target']})" if "target" in r else ""
            print(
                f"  {operation:<10} {r['variant']:<38} {r['best_calls_per_s']:>12,.0f} {r['median_calls_per_s']:>9,.0f} "
                f"{r['best_us_per_call']:>8.1f} {ratio} {paired} {overhead}  {target}"
            )
    print("  the pool's own cost, best us/call over the reference (bare without botocore's retry handler):")
    for operation, variants in results.items():
        own = ", ".join(
            f"{r['variant'].split(':')[0]} {r['us_per_call_over_reference']:+.1f} us"
            for r in variants.values()
            if "us_per_call_over_reference" in r
        )
        print(f"    {operation}: {own}")


def monitoring_mode(pool: Any) -> str | None:
    config = getattr(pool.config, "monitoring_config", None)
    return getattr(config, "mode", None)


def environment() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    core = importlib.import_module("bench_core")
    return {
        **core.environment(),
        "boto3": boto3.__version__,
        "botocore": botocore.__version__,
        "aiobotocore": aiobotocore.__version__,
    }


def _freeze() -> None:
    """Move the clients and everything imported out of the collector's way: each run starts with a cheap collection."""
    gc.collect()
    gc.freeze()


def run_sections(
    work: Callable[[Runner, list[Variant]], dict[str, Any]],
    clients: int = 1,
) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """``work`` on the sync variants, then on the async ones (clients open in ``async with``).

    ``clients``: how many clients of each variant to build (one set after the other).
    """
    pools = [make_pool(), make_pool()]
    sync_variants = [variant for _ in range(clients) for variant in make_sync_variants(pools[0])]
    _freeze()
    try:
        sync_result = work(Runner(), sync_variants)
    finally:
        gc.unfreeze()
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    try:
        variants = []
        for _ in range(clients):
            variants += loop.run_until_complete(make_async_variants(pools[1], stack))
        _freeze()
        async_result = work(Runner(loop), variants)
    finally:
        gc.unfreeze()
        loop.run_until_complete(stack.aclose())
        loop.close()
    for pool in pools:
        pool.shutdown(wait=True)
    return sync_result, async_result, pools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 10 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--rounds", type=int, help="rounds per operation (default 51, quick 7)")
    parser.add_argument("-n", type=int, help="sequential calls per timed run (default 100)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument(
        "--clients",
        type=int,
        default=1,
        help="clients built per variant, each timed every round (default 1); a variant's round is their mean",
    )
    parser.add_argument("--profile", action="store_true", help="profile the pooled paths instead (cProfile)")
    parser.add_argument("--top", type=int, default=25, help="functions listed per variant with --profile")
    parser.add_argument(
        "--breakdown", action="store_true", help="time the pool's handlers alone, without botocore, instead"
    )
    args = parser.parse_args(argv)
    if args.clients < 1:
        parser.error(f"--clients must be a whole number >= 1, got {args.clients}")

    n = args.n or 100
    rounds = args.rounds or (7 if args.quick else 51)
    warm = 50 if args.quick else 200

    env = environment()
    print("s3pool_plugins botocore adapter benchmark (canned responses, no network)")
    print(
        f"  python {env['python']} ({env['implementation']}), {env['platform']}, "
        f"cpu_count={env['cpu_count']} usable={env['usable_cpus']}, loadavg={env['loadavg']}"
    )
    print(f"  boto3 {env['boto3']}, botocore {env['botocore']}, aiobotocore {env['aiobotocore']}")
    started = time.perf_counter()

    if args.breakdown:
        n_hot, n_cold = (20_000, 1_000) if args.quick else (50_000, 2_000)
        n_cold = args.n or n_cold
        print(f"  {n_hot:,} steps hot, {n_cold:,} in situ (each after a bare botocore call)")
        results = breakdown(n_hot, n_cold)
        print_breakdown(results)
        if args.json:
            settings = {"breakdown": True, "n_hot": n_hot, "n_in_situ": n_cold}
            report = {"environment": env, "settings": settings, "breakdown": results}
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
            print(f"Wrote {args.json}")
        return 0

    if args.profile:
        profile_n = args.n or 2000
        print(f"  cProfile, {profile_n:,} sequential HeadObject calls per variant")
        sync_profile, async_profile, _ = run_sections(
            lambda runner, variants: profile_section(runner, variants, profile_n)
        )
        print_profile("Sync (botocore)", sync_profile, args.top)
        print_profile("Async (aiobotocore)", async_profile, args.top)
        if args.json:
            report = {"environment": env, "settings": {"profile": True, "n": profile_n}}
            report |= {"sync": sync_profile, "async": async_profile}
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
            print(f"Wrote {args.json}")
        return 0

    probe = make_pool()
    monitoring = monitoring_mode(probe)
    probe.shutdown(wait=True)
    print(
        f"  sequential calls, pool concurrency C={CONCURRENCY} (monitoring={monitoring}, "
        f"no plugins), N={n:,} calls per run, rounds={rounds}, warm-up {warm} calls{' (quick)' if args.quick else ''}, "
        f"{args.clients} client(s) per variant"
    )
    sync_results, async_results, pools = run_sections(
        lambda runner, variants: bench_section(runner, variants, n, rounds, warm), args.clients
    )
    print_section("1. Sync: boto3 / botocore, one thread", sync_results)
    print_section("2. Async: aiobotocore, one event loop", async_results)

    elapsed = time.perf_counter() - started
    env["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    targets = {
        f"{kind}: {operation}: {r['variant']}": r["target_met"]
        for kind, results in (("sync", sync_results), ("async", async_results))
        for operation, variants in results.items()
        for r in variants.values()
        if "target_met" in r
    }
    print(f"\nTargets (ratio of best rounds >= {TARGET}): {sum(targets.values())} of {len(targets)} met")
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
                "clients_per_variant": args.clients,
                "warm_up_calls": warm,
                "concurrency": CONCURRENCY,
                "body_bytes": len(BODY),
                "monitoring": monitoring_mode(pools[0]),
                "hooks_implemented": sorted(pools[0].plugin_manager.implemented),
            },
            "sync": sync_results,
            "async": async_results,
            "targets": targets,
            "elapsed_s": elapsed,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"Wrote {args.json}")
    return 1 if args.strict and not all(targets.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
