"""The bench's scenarios: what the proxy does (latency, the throttled prefix's rate) and when it changes.

A :class:`Scenario` is a description; :func:`plan` turns it and the
command's :class:`Settings` into a :class:`Plan` for one run: its duration,
the median latency, the closed-loop workers, the prefix's rate and the
timeline of rate changes. Times are seconds.

The throttled prefix takes ``rate`` requests per second in all: S3 limits
reads and writes of a prefix separately, so the proxy gets ``rate / 2``
reads (GET) and ``rate / 2`` writes (PUT) per second, and the workload
alternates the two.

Two more kinds of scenario test the pool in company:

- *ambient* 503s: a share of all requests is answered 503 ``SlowDown`` at
  random, whatever the rate (other clients on the prefix, a partition being
  split); there is no rate limit, or (``mixed``) one on top;
- a *short job* (:attr:`Scenario.job`): a fixed number of PUTs against a
  prefix that takes R writes per second, run until they are all done and
  measured whole, from the first second, as a short batch job meets S3.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "hot/"
"""Every call of the workload goes to a key under this prefix."""

HIGH_LATENCY_WORKERS = 64
"""The high-latency scenario keeps at least this many calls offered, so limits up to 64 can be used."""


@dataclass(frozen=True)
class Settings:
    """What the command line chose (seconds for times, requests per second for rates)."""

    duration: float | None = None
    """Seconds per run; None: each scenario's own default."""
    warmup: float = 5.0
    rate: float = 100.0
    latency: float = 0.020
    high_latency: float = 0.200
    workers: int = 32
    limit: int = 16
    fixed_limits: tuple[int, ...] = (4, 16, 64)
    seed: int = 1
    auto_scope: str = "prefix"
    quick: bool = False
    job: int = 600
    """PUTs of the short job."""


@dataclass(frozen=True)
class Scenario:
    """One scenario of the bench (see :data:`SCENARIOS`)."""

    name: str
    title: str
    summary: str
    default_duration: float
    quick_duration: float
    throttled: bool = True
    high_latency: bool = False
    drop: bool = False
    tenants: tuple[tuple[str, int], ...] = ()
    ambient: float = 0.0
    """The share of requests answered 503 at random, whatever the rate (0: none)."""
    job: bool = False
    """A short job: ``Settings.job`` PUTs, measured whole; the prefix takes R writes/s."""


@dataclass(frozen=True)
class Change:
    """At ``at`` seconds into the run, the prefix's rate becomes ``rate`` (requests per second in all)."""

    at: int
    rate: float


@dataclass(frozen=True)
class Plan:
    """One run's parameters, derived from a scenario and the settings."""

    scenario: Scenario
    duration: int
    warmup: int
    latency: float
    workers: int
    rate: float | None
    changes: tuple[Change, ...]
    tenants: tuple[tuple[str, int], ...]
    seed: int
    ambient: float = 0.0
    job: int = 0
    """PUTs of a short job (then ``duration`` is the most seconds it may take); 0: a closed loop for ``duration``."""

    @property
    def drop_at(self) -> int | None:
        """The second of the capacity drop, if any."""
        return self.changes[0].at if self.scenario.drop else None

    @property
    def recover_at(self) -> int | None:
        """The second of the recovery, if any."""
        return self.changes[1].at if self.scenario.drop else None


THROTTLED = Scenario(
    "throttled",
    "a prefix throttled at R requests/s",
    "goodput against R, the share of 503s after the warm-up, attempts per call",
    default_duration=30,
    quick_duration=6,
)
HIGH_LATENCY = Scenario(
    "high-latency",
    "high latency, no rate limit",
    "throughput of the pool on auto in its first 10 s against the best of a few fixed limits",
    default_duration=20,
    quick_duration=6,
    throttled=False,
    high_latency=True,
)
CAPACITY_DROP = Scenario(
    "capacity-drop",
    "capacity drops from R to R/4 and recovers",
    "seconds until 503s stay under 1% after the drop; seconds until goodput is back to 90% of R",
    default_duration=60,
    quick_duration=9,
    drop=True,
)
TENANTS = Scenario(
    "tenants",
    "two tenants with weights 1:3 on a prefix throttled at R",
    "the share of successful calls each tenant got",
    default_duration=30,
    quick_duration=6,
    tenants=(("a", 1), ("b", 3)),
)

AMBIENT_2 = Scenario(
    "ambient-2",
    "2% of requests answered 503 at random, no rate limit",
    "goodput against the pool with a fixed limit and boto3 standard, attempts per call",
    default_duration=30,
    quick_duration=6,
    throttled=False,
    ambient=0.02,
)
AMBIENT_20 = Scenario(
    "ambient-20",
    "20% of requests answered 503 at random, no rate limit",
    "goodput against the pool with a fixed limit and boto3 standard, attempts per call",
    default_duration=30,
    quick_duration=6,
    throttled=False,
    ambient=0.20,
)
MIXED = Scenario(
    "mixed",
    "a prefix throttled at R requests/s plus 5% of requests answered 503 at random",
    "goodput against R, the share of 503s after the warm-up against the random share",
    default_duration=30,
    quick_duration=6,
    ambient=0.05,
)
SHORT_JOB = Scenario(
    "short-job",
    "a short job of PUTs to a prefix that takes R writes/s, measured whole",
    "the share of 503s over the whole job (no warm-up left out), goodput against R",
    default_duration=0,
    quick_duration=0,
    job=True,
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (THROTTLED, HIGH_LATENCY, CAPACITY_DROP, TENANTS, AMBIENT_2, AMBIENT_20, MIXED, SHORT_JOB)
}
"""Every scenario by name, in the order the bench runs them."""

JOB_MIN_SECONDS = 30
JOB_SLACK = 10
"""A short job may take ``JOB_SLACK`` times its ideal length (at least ``JOB_MIN_SECONDS``); then it is cut off."""


def job_cap(settings: Settings) -> int:
    """The most whole seconds a short job of ``settings.job`` PUTs at ``settings.rate`` may take."""
    return int(max(JOB_MIN_SECONDS, -(-JOB_SLACK * settings.job // settings.rate)))


def duration_of(scenario: Scenario, settings: Settings) -> int:
    """Whole seconds a run of ``scenario`` lasts (``--duration``, else ``--quick``'s, else the default).

    A short job runs until its PUTs are done; this is the most it may take (:func:`job_cap`).
    """
    if scenario.job:
        return job_cap(settings)
    if settings.duration is not None:
        return max(1, int(settings.duration))
    return int(scenario.quick_duration if settings.quick else scenario.default_duration)


def plan(scenario: Scenario, settings: Settings) -> Plan:
    """The parameters of a run of ``scenario`` under ``settings``."""
    duration = duration_of(scenario, settings)
    changes: tuple[Change, ...] = ()
    if scenario.drop:
        third = duration // 3
        changes = (Change(third, settings.rate / 4), Change(duration - third, settings.rate))
    workers = max(settings.workers, HIGH_LATENCY_WORKERS) if scenario.high_latency else settings.workers
    return Plan(
        scenario=scenario,
        duration=duration,
        warmup=0 if scenario.job else min(int(-(-settings.warmup // 1)), duration - 1),
        latency=settings.high_latency if scenario.high_latency else settings.latency,
        workers=workers,
        rate=settings.rate if scenario.throttled else None,
        changes=changes,
        tenants=scenario.tenants,
        seed=settings.seed,
        ambient=scenario.ambient,
        job=settings.job if scenario.job else 0,
    )
