"""The bench's output: a table per scenario and the JSON document, from the run records.

Every cell is a measured figure; a cell that carries one of the
targets says ``met`` or ``missed`` after the figure, and the column header
names the target.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from ..summary import count, seconds, table
from .measures import MIXED_SHARE_SLACK, attempts_target, measure
from .runner import RunRecord
from .scenarios import SCENARIOS, Plan, Settings

FORMAT = "s3pool-bench/1"


def best_fixed(records: Sequence[RunRecord]) -> tuple[str, float] | None:
    """The label and goodput (after the warm-up) of the best ``pool-fixed`` run among ``records``."""
    from .measures import goodput

    fixed = [(r.label, goodput(r)) for r in records if r.competitor == "pool-fixed" and r.status == "ok"]
    return max(fixed, key=lambda item: item[1]) if fixed else None


def baselines(records: Sequence[RunRecord]) -> dict[str, float]:
    """The goodput (after the warm-up) of the ``pool-fixed`` and ``boto3`` runs among ``records`` that ran."""
    from .measures import goodput

    return {r.competitor: goodput(r) for r in records if r.competitor in ("pool-fixed", "boto3") and r.status == "ok"}


def run_document(
    record: RunRecord, plan: Plan, best: tuple[str, float] | None, compared: dict[str, float] | None = None
) -> dict[str, Any]:
    """One run as JSON: identity, settings, totals, per-second series, figures and targets."""
    document: dict[str, Any] = {
        "scenario": record.scenario,
        "competitor": record.competitor,
        "label": record.label,
        "limit": record.limit,
        "status": record.status,
        "reason": record.reason,
    }
    if record.status != "ok":
        return document
    data = asdict(record)
    for name in ("scenario", "competitor", "label", "limit", "status", "reason"):
        data.pop(name)
    data["errors"] = dict(record.errors)
    series = {name: data.pop(name) for name in ("succeeded", "failed", "requests", "throttled", "capacity", "limits")}
    series["by_tenant"] = data.pop("by_tenant")
    document.update(data)
    document["series"] = series
    document["measures"] = measure(record, dict(plan.tenants), None if best is None else best[1], compared)
    return document


def document(
    settings: Settings, plans: Sequence[Plan], records: Sequence[RunRecord], wall_time: float
) -> dict[str, Any]:
    """The whole JSON document of a bench run (times in seconds, rates per second, shares in [0, 1])."""
    import boto3
    import botocore
    import s3fs

    from ... import __version__

    scenarios = []
    for plan in plans:
        mine = [r for r in records if r.scenario == plan.scenario.name]
        best = best_fixed(mine) if plan.scenario.high_latency else None
        compared = baselines(mine) if plan.scenario.ambient and plan.rate is None else {}
        scenarios.append(
            {
                "name": plan.scenario.name,
                "title": plan.scenario.title,
                "duration": plan.duration,
                "warmup": plan.warmup,
                "workers": plan.workers,
                "latency": plan.latency,
                "rate": plan.rate,
                "changes": [asdict(change) for change in plan.changes],
                "tenants": dict(plan.tenants),
                "ambient": plan.ambient,
                "job": plan.job,
                "best_fixed": None if best is None else {"label": best[0], "goodput": best[1]},
                "baselines": compared,
                "runs": [run_document(r, plan, best, compared) for r in mine],
            }
        )
    return {
        "format": FORMAT,
        "settings": {**asdict(settings), "fixed_limits": list(settings.fixed_limits)},
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "s3pool_plugins": __version__,
            "boto3": boto3.__version__,
            "botocore": botocore.__version__,
            "s3fs": s3fs.__version__,
        },
        "wall_time": wall_time,
        "scenarios": scenarios,
    }


def _percent(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}%"


def _mark(text: str, target: dict[str, Any] | None) -> str:
    if target is None or target["met"] is None:
        return text
    return f"{text} {'met' if target['met'] else 'missed'}"


def _attempts(measures: dict[str, Any]) -> str:
    attempts = measures["attempts_per_call"]
    return "-" if attempts is None else f"{attempts:.2f}"


def _after(value: int | None) -> str:
    return "never" if value is None else f"{value} s"


def _deviation(shares: dict[str, float], weights: dict[str, int]) -> str:
    first = next(iter(weights))
    expected = weights[first] / sum(weights.values())
    return f"off by {100 * abs(shares.get(first, 0.0) - expected):.1f} points"


def scenario_table(scenario: dict[str, Any]) -> str:
    """The table of one scenario of :func:`document`, with a heading and notes."""
    name = scenario["name"]
    rate = scenario["rate"]
    facts = [f"median latency {seconds(scenario['latency'])}", f"{scenario['workers']} workers"]
    if scenario.get("ambient"):
        facts.insert(0, f"{100 * scenario['ambient']:g}% random 503s")
    if rate is not None:
        facts.insert(0, f"R = {rate:g}/s")
    if scenario.get("job"):
        facts.append(f"{count(scenario['job'])} PUTs, at most {scenario['duration']} s, all counted")
    else:
        facts.append(f"{scenario['duration']} s per run, first {scenario['warmup']} s are warm-up")
    number = list(SCENARIOS).index(name) + 1
    lines = [f"{number}. {name}: {scenario['title']} ({', '.join(facts)})"]
    runs = [r for r in scenario["runs"] if r["status"] == "ok"]
    notes = [f"  {r['label']}: {r['status']}: {r['reason']}" for r in scenario["runs"] if r["status"] != "ok"]
    if name == "throttled":
        headers = ["", "goodput/s", "of R (>= 90%)", "503s (<= 1%)", "attempts/call (<= 1.1)", "failed calls"]
    elif name == "high-latency":
        first = min(10, scenario["duration"])
        headers = ["", "goodput/s", f"first {first} s", "90% of best fixed at (auto: <= 10 s)", "failed calls"]
    elif name == "capacity-drop":
        headers = [
            "",
            "goodput/s before/drop/after",
            "503s in the drop",
            "503s < 1% after (<= 10 s)",
            "90% of R after (<= 20 s)",
            "failed calls",
        ]
    elif name.startswith("ambient"):
        most = attempts_target(scenario["ambient"])
        headers = [
            "",
            "goodput/s",
            "of fixed (>= 90%)",
            "of boto3 (>= 100%)",
            "503s",
            f"attempts/call (<= {most:.2f})",
            "failed calls",
        ]
    elif name == "mixed":
        most = scenario["ambient"] + MIXED_SHARE_SLACK
        headers = ["", "goodput/s", "of R (>= 85%)", f"503s (<= {most:.0%})", "attempts/call", "failed calls"]
    elif name == "short-job":
        headers = ["", "job time", "goodput/s", "of R (>= 80%)", "503s (<= 2%)", "attempts/call", "failed calls"]
    else:
        weights = scenario["tenants"]
        total = sum(weights.values())
        goal = "/".join(f"{100 * w / total:.0f}" for w in weights.values())
        headers = ["", "goodput/s", *(f"share {t}" for t in weights), f"within 5 points of {goal}", "failed calls"]
    rows = []
    for run in runs:
        m = run["measures"]
        targets = {t["name"]: t for t in m["targets"]}
        failed = count(run["failures"])
        if name == "throttled":
            row = [
                f"{m['goodput']:.1f}",
                _mark(_percent(m["goodput_of_rate"]), targets.get("goodput")),
                _mark(_percent(m["throttled_share"], 1), targets.get("503s")),
                _mark(_attempts(m), targets.get("attempts")),
            ]
        elif name == "high-latency":
            reached = m.get("reached_90_percent_of_best_fixed_at")
            row = [
                f"{m['goodput']:.1f}",
                f"{m['first_10s_goodput']:.1f}",
                _mark(_after(reached), targets.get("auto")),
            ]
        elif name == "capacity-drop":
            if "drop_at" in m:
                row = [
                    f"{m['goodput_before']:.0f}/{m['goodput_during']:.0f}/{m['goodput_after']:.0f}",
                    _percent(m["throttled_share_during"], 1),
                    _mark(_after(m["calm_after_drop"]), targets.get("calm")),
                    _mark(_after(m["recovered_after"]), targets.get("recovery")),
                ]
            else:
                row = ["-", "-", "-", "-"]
        elif name.startswith("ambient"):
            row = [
                f"{m['goodput']:.1f}",
                _mark(_percent(m["goodput_of_fixed"]), targets.get("fixed")),
                _mark(_percent(m["goodput_of_boto3"]), targets.get("boto3")),
                _percent(m["throttled_share"], 1),
                _mark(_attempts(m), targets.get("attempts")),
            ]
        elif name == "mixed":
            row = [
                f"{m['goodput']:.1f}",
                _mark(_percent(m["goodput_of_rate"]), targets.get("goodput")),
                _mark(_percent(m["throttled_share"], 1), targets.get("503s")),
                _attempts(m),
            ]
        elif name == "short-job":
            row = [
                seconds(m["job_time"]) + (" (cut off)" if m["cut_off"] else ""),
                f"{m['goodput']:.1f}",
                _mark(_percent(m["goodput_of_rate"]), targets.get("goodput")),
                _mark(_percent(m["throttled_share"], 1), targets.get("503s")),
                _attempts(m),
            ]
        else:
            shares = m["tenant_shares"]
            row = [
                f"{m['goodput']:.1f}",
                *(_percent(shares.get(t), 1) for t in scenario["tenants"]),
                _mark(_deviation(shares, scenario["tenants"]), targets.get("shares")),
            ]
        rows.append([run["label"], *row, failed])
    if rows:
        lines.append(table(headers, rows))
    else:
        lines.append("(no run of this scenario could be made)")
    if scenario.get("best_fixed"):
        best = scenario["best_fixed"]
        lines.append(f"best fixed limit: {best['label']}, {best['goodput']:.1f} calls/s after the warm-up")
    unfinished = [r for r in runs if r.get("unfinished")]
    for run in unfinished:
        notes.append(f"  {run['label']}: {run['unfinished']} workers were still in a call when the drain timed out")
    if notes:
        lines.append("Not measured or incomplete:")
        lines.extend(notes)
    return "\n".join(lines)


def tables(doc: dict[str, Any]) -> str:
    """Every scenario's table of :func:`document`, separated by blank lines."""
    return "\n\n".join(scenario_table(scenario) for scenario in doc["scenarios"])
