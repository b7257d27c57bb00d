"""The ``hedged-reads`` scenario: a slow tail of GETs, the pool with and without hedged reads, in one run.

The proxy answers :data:`TAIL_SHARE` of all requests :data:`TAIL_DELAY`
seconds late (its headers, not its body) and the others after the bench's
median latency. ``workers`` closed-loop threads (half the pool's limit, so
the pool has room for hedges: a pool whose every slot is busy sends none)
make 1 KiB ``GetObject`` calls through boto3 installed with a pool of the
bench's ``--limit``, first without the ``hedge`` option, then with it (its
defaults: a learned p95 delay, at most 5% extra requests). Each run has a
fresh proxy with the same seed, so both meet the same sequence of slow
answers.

Two parts, each with both runs:

- *tail*: no rate limit. Figures: p99 of the call latency after the
  warm-up, and the extra requests the hedges cost (requests at the proxy per
  call, minus one). Targets: hedged p99 <= 0.3 x unhedged p99, extra
  requests <= 5%.
- *throttled*: the prefix also takes only R reads per second, and the
  workers offer 1.5 R calls per second at a fixed pace (an open loop: a
  closed loop would offer more calls as hedging makes them faster, and
  measure that instead of the hedges). Figure: the share of 503s at the
  proxy. Target: hedging adds at most 0.5 points.

Everything is measured, nothing estimated. Times are seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .scenarios import PREFIX, Settings

TAIL_SHARE = 0.025
"""The share of requests answered late (2.5%)."""
TAIL_DELAY = 1.0
"""Seconds a late answer comes after the usual latency."""
P99_RATIO = 0.3
EXTRA_REQUESTS = 0.05
THROTTLED_POINTS = 0.5
OFFERED = 1.5
"""The throttled part offers this many times the prefix's rate, at a fixed pace (an open loop)."""
OBJECTS = 64
OBJECT_SIZE = 1024
DEFAULT_DURATION = 30
QUICK_DURATION = 8


@dataclass
class HedgeRun:
    """One run: the pool with (``hedged``) or without hedged reads, in the tail or the throttled part."""

    part: str
    hedged: bool
    seconds: float = 0.0
    calls: int = 0
    failures: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    """Call latencies after the warm-up, seconds."""
    requests: int = 0
    throttled: int = 0
    hedges: int = 0
    hedges_won: int = 0
    hedge_time_saved: float = 0.0

    def p99(self) -> float | None:
        """The 99th percentile of the call latencies after the warm-up (nearest rank), or None."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]

    def extra_requests(self) -> float:
        """Requests at the proxy per call, minus one (the hedges', and any retries')."""
        return self.requests / self.calls - 1 if self.calls else 0.0

    def throttled_share(self) -> float:
        """The share of the proxy's answers that were 503 ``SlowDown``."""
        return self.throttled / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies")
        data.update(
            p99=self.p99(),
            extra_requests=self.extra_requests(),
            throttled_share=self.throttled_share(),
            measured_calls=len(self.latencies),
        )
        return data


def duration(settings: Settings) -> int:
    """Whole seconds per run: ``--duration``, else ``--quick``'s, else the default."""
    if settings.duration is not None:
        return max(1, int(settings.duration))
    return QUICK_DURATION if settings.quick else DEFAULT_DURATION


def run_hedged_reads(server: Any, settings: Settings, progress: Any = None) -> dict[str, Any]:
    """Both parts, unhedged then hedged each; returns the scenario's JSON section (figures and targets)."""
    runs = []
    for part in ("tail", "throttled"):
        for hedged in (False, True):
            if progress is not None:
                progress.update(f"hedged-reads / {part} / {'hedged' if hedged else 'unhedged'}: running", force=True)
            run = _run(server, settings, part, hedged)
            if progress is not None:
                progress.done(
                    f"hedged-reads / {part} / {'hedged' if hedged else 'unhedged'}: {run.calls} calls, "
                    f"p99 {_ms(run.p99())}, {100 * run.extra_requests():.2f}% extra requests, "
                    f"{100 * run.throttled_share():.2f}% 503s"
                )
            runs.append(run)
    return document(runs, settings)


def document(runs: list[HedgeRun], settings: Settings) -> dict[str, Any]:
    """The JSON section: every run, and the targets with their figures."""
    by = {(run.part, run.hedged): run for run in runs}
    plain, hedged = by[("tail", False)], by[("tail", True)]
    plain_p99, hedged_p99 = plain.p99(), hedged.p99()
    ratio = hedged_p99 / plain_p99 if plain_p99 and hedged_p99 is not None else None
    points = 100 * (by[("throttled", True)].throttled_share() - by[("throttled", False)].throttled_share())
    targets = {
        "p99_ratio": {"value": ratio, "target": P99_RATIO, "met": ratio is not None and ratio <= P99_RATIO},
        "extra_requests": {
            "value": hedged.extra_requests(),
            "target": EXTRA_REQUESTS,
            "met": hedged.extra_requests() <= EXTRA_REQUESTS,
        },
        "throttled_points_added": {"value": points, "target": THROTTLED_POINTS, "met": points <= THROTTLED_POINTS},
    }
    return {
        "scenario": "hedged-reads",
        "tail_share": TAIL_SHARE,
        "tail_delay": TAIL_DELAY,
        "latency": settings.latency,
        "limit": settings.limit,
        "workers": _workers(settings),
        "rate": settings.rate,
        "duration": duration(settings),
        "warmup": _warmup(settings),
        "runs": [run.as_dict() for run in runs],
        "targets": targets,
    }


def table(section: dict[str, Any]) -> str:
    """The scenario's table: one row per run, then the targets (met or missed)."""
    lines = [
        f"hedged-reads: {100 * section['tail_share']:g}% of GETs answered {section['tail_delay']:g} s late; "
        f"{section['workers']} workers, limit {section['limit']}; throttled part: {section['rate']:g} reads/s",
        f"{'part':<10} {'pool':<9} {'calls':>7} {'p99':>9} {'extra req':>10} {'503s':>7} {'hedges':>7} {'won':>5}",
    ]
    for run in section["runs"]:
        lines.append(
            f"{run['part']:<10} {'hedged' if run['hedged'] else 'unhedged':<9} {run['calls']:>7} "
            f"{_ms(run['p99']):>9} {100 * run['extra_requests']:>9.2f}% {100 * run['throttled_share']:>6.2f}% "
            f"{run['hedges']:>7} {run['hedges_won']:>5}"
        )
    targets = section["targets"]
    ratio = targets["p99_ratio"]
    extra = targets["extra_requests"]
    added = targets["throttled_points_added"]
    shown_ratio = "n/a" if ratio["value"] is None else f"{ratio['value']:.3f}"
    lines += [
        f"hedged p99 / unhedged p99: {shown_ratio} (target <= {ratio['target']:g}: {_met(ratio)})",
        f"extra requests, hedged: {100 * extra['value']:.2f}% (target <= {100 * extra['target']:g}%: {_met(extra)})",
        f"503s added by hedging, throttled: {added['value']:+.2f} points "
        f"(target <= {added['target']:g}: {_met(added)})",
    ]
    return "\n".join(lines)


def _met(target: dict[str, Any]) -> str:
    return "met" if target["met"] else "missed"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{1000 * value:.0f} ms"


def _workers(settings: Settings) -> int:
    return max(1, settings.limit // 2)


def _warmup(settings: Settings) -> float:
    return min(settings.warmup, duration(settings) / 2)


def _run(server: Any, settings: Settings, part: str, hedged: bool) -> HedgeRun:
    import boto3
    from botocore.config import Config

    from ...adapters.botocore import install
    from ...core.pool import OperationsPool
    from ...testing import ChaosProxy, Latency

    run = HedgeRun(part, hedged)
    bucket = server.create_bucket()
    direct = server.client()
    for index in range(OBJECTS):
        direct.put_object(Bucket=bucket, Key=f"{PREFIX}read/{index:03d}", Body=b"r" * OBJECT_SIZE)
    direct.close()
    late = Latency(
        settings.latency,
        sigma=0.25,
        tail_probability=TAIL_SHARE,
        tail_scale=settings.latency + TAIL_DELAY,
        tail_alpha=1e9,  # every late answer comes TAIL_DELAY after the usual latency
    )
    workers = _workers(settings)
    length = duration(settings)
    warmup = _warmup(settings)
    with ChaosProxy(server.endpoint_url, seed=settings.seed) as proxy:
        proxy.configure(latency=late)
        if part == "throttled":
            proxy.limit_prefix(f"{bucket}/{PREFIX}", reads_per_second=settings.rate, burst=max(1.0, settings.rate / 4))
        pool = OperationsPool(concurrency=settings.limit, hedge=hedged, seed=settings.seed, name=f"bench-hedge-{part}")
        session = boto3.session.Session(
            aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key, region_name=server.region
        )
        install(session, pool)
        client = session.client(
            "s3",
            endpoint_url=proxy.endpoint_url,
            config=Config(s3={"addressing_style": "path"}, max_pool_connections=2 * settings.limit),
        )
        lock = threading.Lock()
        stop = threading.Event()
        proxy.reseed(settings.seed)
        proxy.reset_counts()
        started = time.monotonic()

        pace = OFFERED * settings.rate if part == "throttled" else None

        def work(worker: int) -> None:
            n = 0
            while not stop.is_set():
                if pace is not None:  # an open loop: the same requests offered per second with or without hedging
                    due = started + (n * workers + worker) / pace
                    if stop.wait(max(0.0, due - time.monotonic())):
                        break
                key = f"{PREFIX}read/{(worker * 7 + n) % OBJECTS:03d}"
                began = time.monotonic()
                failed = False
                try:
                    client.get_object(Bucket=bucket, Key=key)["Body"].read()
                except Exception:
                    failed = True
                ended = time.monotonic()
                with lock:
                    run.calls += 1
                    run.failures += failed
                    if began - started >= warmup and not failed:
                        run.latencies.append(ended - began)
                n += 1

        threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
        for thread in threads:
            thread.start()
        stop.wait(length)
        stop.set()
        for thread in threads:
            thread.join(60)
        deadline = time.monotonic() + 10  # the losers still in flight end, and are counted
        while pool.stats().active and time.monotonic() < deadline:
            time.sleep(0.01)
        proxy.wait_idle(timeout=5)
        run.seconds = time.monotonic() - started
        seen = proxy.stats()
        run.requests, run.throttled = seen.requests, seen.throttled
        stats = pool.stats()
        run.hedges, run.hedges_won, run.hedge_time_saved = stats.hedges, stats.hedges_won, stats.hedge_time_saved
        client.close()
        pool.shutdown(wait=True)
    return run
