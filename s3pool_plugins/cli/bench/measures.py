"""What the bench computes from a :class:`~.runner.RunRecord`, and the targets set for the pool.

Pure functions over the per-second series; nothing here measures anything.
"After the warm-up" means the seconds ``[warmup, duration)`` of a run. A
short job is measured whole: its goodput is its successful calls over the
seconds until its last call ended, its 503 share and attempts are the
proxy's totals.
Targets are checked as ratios within one run; a :class:`Target`
is ``met`` True or False, or None when the run gives nothing to check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .runner import RunRecord

GOODPUT_TARGET = 0.90
THROTTLED_SHARE_TARGET = 0.01
ATTEMPTS_TARGET = 1.10
AUTO_REACH_SECONDS = 10
AUTO_REACH_FRACTION = 0.90
CALM_SECONDS = 10
RECOVERY_SECONDS = 20
RECOVERY_FRACTION = 0.90
SHARE_TOLERANCE = 0.05
AMBIENT_FIXED_TARGET = 0.90
"""Ambient 503s: the pool on auto keeps at least this share of the fixed-limit pool's goodput."""
ATTEMPTS_SLACK = 0.05
"""Ambient 503s at share p: at most ``1 / (1 - p) + ATTEMPTS_SLACK`` attempts per call."""
MIXED_GOODPUT_TARGET = 0.85
MIXED_SHARE_SLACK = 0.01
"""Mixed: the 503 share after the warm-up is at most the random share plus this."""
JOB_THROTTLED_TARGET = 0.02
JOB_GOODPUT_TARGET = 0.80
REACH_WINDOW = 2
"""Seconds averaged when looking for the moment auto reached the best fixed limit's throughput."""


@dataclass(frozen=True)
class Target:
    """One target for one run: ``value`` against ``goal`` (a text), ``met`` or not."""

    name: str
    goal: str
    value: float | None
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def goodput(record: RunRecord, start: int | None = None, end: int | None = None) -> float:
    """Successful calls per second over seconds ``[start, end)`` (default: after the warm-up; a short job: whole)."""
    if record.job_time is not None and start is None and end is None:
        return _share(record.calls - record.failures, record.job_time)
    first = record.warmup if start is None else start
    last = record.duration if end is None else end
    return _mean(record.succeeded[first:last])


def throttled_share(record: RunRecord, start: int | None = None, end: int | None = None) -> float:
    """The share of the proxy's answers that were 503 ``SlowDown``, over ``[start, end)``.

    By default: after the warm-up; for a short job, every request it made.
    """
    if record.job_time is not None and start is None and end is None:
        return _share(record.proxy_throttled, record.proxy_requests)
    first = record.warmup if start is None else start
    last = record.duration if end is None else end
    return _share(sum(record.throttled[first:last]), sum(record.requests[first:last]))


def attempts_per_call(record: RunRecord) -> float | None:
    """Requests the proxy saw per call, over the whole run (warm-up and drain included; None without calls).

    Whole-run totals, because a request cannot be told apart by the second
    its call began: a per-second window would pair the requests of one
    stretch with the calls that ended in it.
    """
    return record.proxy_requests / record.calls if record.calls else None


def drop_and_recovery(record: RunRecord) -> tuple[int, int] | None:
    """The seconds at which the prefix's rate fell and rose again, from the record's capacity series."""
    capacity = record.capacity
    for drop in range(1, len(capacity)):
        before, now = capacity[drop - 1], capacity[drop]
        if before is not None and now is not None and now < before:
            for rise in range(drop + 1, len(capacity)):
                previous, later = capacity[rise - 1], capacity[rise]
                if previous is not None and later is not None and later > previous:
                    return drop, rise
            return None
    return None


def calm_after_drop(record: RunRecord, drop: int, recovery: int) -> int | None:
    """Seconds after the drop from which the 503 share until the recovery is under 1% (None: never).

    The share is taken over the whole rest of the low-capacity phase, as the
    throttled scenario takes it over the run after its warm-up: a client that
    probes for a recovered capacity meets a few 503s now and then, and that
    is the price of finding it.
    """
    for offset in range(recovery - drop):
        if throttled_share(record, drop + offset, recovery) < THROTTLED_SHARE_TARGET:
            return offset
    return None


def recovered_after(record: RunRecord, recovery: int) -> int | None:
    """Seconds after the recovery until the end of the first second with goodput >= 90% of the new rate."""
    capacity = record.capacity[recovery] if recovery < len(record.capacity) else None
    if capacity is None:
        return None
    for second in range(recovery, record.duration):
        if record.succeeded[second] >= RECOVERY_FRACTION * capacity:
            return second - recovery + 1
    return None


def tenant_shares(record: RunRecord) -> dict[str, float]:
    """Each tenant's share of the successful calls after the warm-up."""
    totals = {name: sum(series[record.warmup : record.duration]) for name, series in record.by_tenant.items()}
    whole = sum(totals.values())
    return {name: _share(total, whole) for name, total in totals.items()}


def reached_at(record: RunRecord, level: float) -> int | None:
    """The first second (from the start) by which the goodput, averaged over 2 s, reached ``level``; None: never."""
    series = record.succeeded
    for end in range(REACH_WINDOW, record.duration + 1):
        if _mean(series[end - REACH_WINDOW : end]) >= level:
            return end
    return None


def attempts_target(ambient: float) -> float:
    """The most attempts per call when a share ``ambient`` of requests is answered 503 at random."""
    return 1 / (1 - ambient) + ATTEMPTS_SLACK


def _relative(value: float, baseline: float | None) -> float | None:
    return None if not baseline else value / baseline


def measure(
    record: RunRecord,
    weights: dict[str, int],
    best_fixed: float | None,
    baselines: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Every figure of a finished run, and its targets: a JSON-ready dict.

    ``baselines`` are the goodputs of the same scenario's ``pool-fixed`` and
    ``boto3`` runs (the ambient scenarios compare with them; a missing one
    leaves its target unchecked).
    """
    figures: dict[str, Any] = {
        "goodput": goodput(record),
        "goodput_of_rate": goodput(record) / record.rate if record.rate else None,
        "throttled_share": throttled_share(record),
        "attempts_per_call": attempts_per_call(record),
        "first_10s_goodput": goodput(record, 0, min(AUTO_REACH_SECONDS, record.duration)),
    }
    targets: list[Target] = []
    scenario = record.scenario
    if scenario == "throttled":
        ratio, share, attempts = figures["goodput_of_rate"], figures["throttled_share"], figures["attempts_per_call"]
        targets = [
            Target("goodput", ">= 90% of R", ratio, ratio >= GOODPUT_TARGET),
            Target("503s", "<= 1% after the warm-up", share, share <= THROTTLED_SHARE_TARGET),
            Target("attempts", "<= 1.1 per call", attempts, None if attempts is None else attempts <= ATTEMPTS_TARGET),
        ]
    elif scenario == "high-latency":
        figures["best_fixed_goodput"] = best_fixed
        level = None if best_fixed is None else AUTO_REACH_FRACTION * best_fixed
        reached = None if level is None else reached_at(record, level)
        figures["reached_90_percent_of_best_fixed_at"] = reached
        if record.competitor == "pool-auto":
            met = None if level is None else reached is not None and reached <= AUTO_REACH_SECONDS
            targets = [Target("auto", ">= 90% of the best fixed limit within 10 s", reached, met)]
    elif scenario == "capacity-drop":
        phases = drop_and_recovery(record)
        if phases is not None:
            drop, recovery = phases
            calm = calm_after_drop(record, drop, recovery)
            back = recovered_after(record, recovery)
            figures.update(
                drop_at=drop,
                recovery_at=recovery,
                goodput_before=goodput(record, record.warmup, drop),
                goodput_during=goodput(record, drop, recovery),
                goodput_after=goodput(record, recovery, record.duration),
                throttled_share_during=throttled_share(record, drop, recovery),
                calm_after_drop=calm,
                recovered_after=back,
            )
            targets = [
                Target("calm", "503s < 1% within 10 s of the drop", calm, calm is not None and calm <= CALM_SECONDS),
                Target(
                    "recovery",
                    ">= 90% of R within 20 s of the recovery",
                    back,
                    back is not None and back <= RECOVERY_SECONDS,
                ),
            ]
    elif scenario == "tenants":
        shares = tenant_shares(record)
        figures["tenant_shares"] = shares
        total = sum(weights.values())
        if shares and total:
            first = next(iter(weights))
            expected = weights[first] / total
            value = shares.get(first, 0.0)
            served = sum(sum(series[record.warmup : record.duration]) for series in record.by_tenant.values())
            met = served > 0 and abs(value - expected) <= SHARE_TOLERANCE + 1e-12
            targets = [Target("shares", f"within 5 points of {expected:.0%}/{1 - expected:.0%}", value, met)]
    elif scenario.startswith("ambient"):
        baselines = baselines or {}
        value, attempts = figures["goodput"], figures["attempts_per_call"]
        of_fixed = _relative(value, baselines.get("pool-fixed"))
        of_boto3 = _relative(value, baselines.get("boto3"))
        most = attempts_target(record.ambient)
        figures.update(goodput_of_fixed=of_fixed, goodput_of_boto3=of_boto3, attempts_target=most)
        targets = [
            Target(
                "fixed",
                ">= 90% of the pool with a fixed limit",
                of_fixed,
                None if of_fixed is None else of_fixed >= AMBIENT_FIXED_TARGET,
            ),
            Target("boto3", ">= boto3 standard", of_boto3, None if of_boto3 is None else of_boto3 >= 1.0),
            Target("attempts", f"<= {most:.2f} per call", attempts, None if attempts is None else attempts <= most),
        ]
    elif scenario == "mixed":
        ratio, share = figures["goodput_of_rate"], figures["throttled_share"]
        most = record.ambient + MIXED_SHARE_SLACK
        targets = [
            Target("goodput", ">= 85% of R", ratio, ratio >= MIXED_GOODPUT_TARGET),
            Target("503s", f"<= {most:.0%} after the warm-up", share, share <= most + 1e-12),
        ]
    elif scenario == "short-job":
        ratio, share = figures["goodput_of_rate"], figures["throttled_share"]
        figures.update(job_time=record.job_time, cut_off=record.cut_off)
        targets = [
            Target("503s", "<= 2% over the whole job", share, share <= JOB_THROTTLED_TARGET and not record.cut_off),
            Target("goodput", ">= 80% of R", ratio, ratio >= JOB_GOODPUT_TARGET and not record.cut_off),
        ]
    figures["targets"] = [target.as_dict() for target in targets]
    return figures
