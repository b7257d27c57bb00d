"""Text formatting for the command's output: durations, counts, tables, the ``run`` summary.

Pure functions over plain data; nothing here measures anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def seconds(value: float | None) -> str:
    """A duration for people: ``850 µs``, ``21 ms``, ``1.25 s``, ``93 s``; ``-`` for None."""
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f} µs"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 10:
        return f"{value:.2f} s"
    return f"{value:.1f} s"


def count(value: int | None) -> str:
    """An integer with thousands separators; ``-`` for None."""
    return "-" if value is None else f"{value:,}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(cell).ljust(width) if index == 0 else str(cell).rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def run_summary(report: Mapping[str, Any], *, program: str, exit_code: int, wall_time: float) -> str:
    """The summary ``s3pool run`` prints at the end (``report`` as written by ``--report``)."""
    head = f"s3pool run: {program} exited with status {exit_code} after {seconds(wall_time)}"
    processes = report.get("processes") or []
    if not processes:
        return "\n".join(
            [
                head,
                "  no S3 calls were pooled: the program made no S3 client through botocore, its Python could",
                "  not import s3pool_plugins, or it was killed before it could write its report",
            ]
        )
    times = report["call_time"]
    calls, failures = report["calls"], report["failures"]
    in_processes = f" in {len(processes)} processes" if len(processes) > 1 else ""
    peak_scope = ", the most in any one process" if len(processes) > 1 else ""
    limit = report.get("limit")
    succeeded = count(report["succeeded"])
    lines = [
        head,
        f"  S3 calls     {count(calls)} ({succeeded} succeeded, {count(failures)} failed){in_processes}",
        f"  retries      {count(report['retries'])} ({count(report['throttles'])} throttled attempts)",
        f"  call time    p50 {seconds(times['p50'])}   p95 {seconds(times['p95'])}   p99 {seconds(times['p99'])}"
        f"   max {seconds(times['max'])}",
        f"  peak active  {count(report['peak_active'])} of a limit of {count(limit)}{peak_scope}",
    ]
    adaptive = report.get("adaptive")
    if adaptive:
        paced = adaptive.get("paced") or {}
        pacing = (
            "; paced now: " + ", ".join(f"{name} at {rate:g}/s" for name, rate in list(paced.items())[:3])
            if paced
            else ""
        )
        lines.append(
            f"  adaptive     limit between {count(adaptive['min_limit'])} and {count(adaptive['max_limit'])}, "
            f"{count(adaptive['changes'])} changes ({count(adaptive['throttling'])} for throttling){pacing}"
        )
    fleet = report.get("fleet")
    if fleet:
        shared = (
            f", at most {count(fleet['fleet_concurrency'])} in flight fleet-wide"
            if fleet.get("fleet_concurrency")
            else ""
        )
        lines.append(f"  fleet        {fleet['fleet_name']} on {fleet['description']}{shared}")
    operations = report.get("operations") or {}
    if operations:
        busiest = sorted(operations.items(), key=lambda item: (-item[1]["calls"], item[0]))[:5]
        text = ", ".join(
            f"{name.removeprefix('S3.')} {count(counts['calls'])}"
            + (f" ({count(counts['failures'])} failed)" if counts["failures"] else "")
            for name, counts in busiest
        )
        more = f", and {len(operations) - len(busiest)} more" if len(operations) > len(busiest) else ""
        lines.append(f"  operations   {text}{more}")
    return "\n".join(lines)
