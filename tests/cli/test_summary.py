"""``s3pool run``'s summary: what an adaptive limit did is told as the range it moved through."""

from __future__ import annotations

from typing import Any

from s3pool_plugins.cli.summary import adaptive_text, run_summary

TIMES = {"p50": 0.01, "p95": 0.1, "p99": 0.2, "max": 0.5}


def _report(**changes: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "processes": [{"pid": 1}],
        "call_time": TIMES,
        "calls": 300,
        "succeeded": 300,
        "failures": 0,
        "retries": 40,
        "throttles": 40,
        "peak_active": 10,
        "limit": 12,
        "adaptive": None,
        "operations": {},
    }
    report.update(changes)
    return report


def test_an_auto_limit_is_told_by_its_range_its_pace_and_the_cause_of_its_503s() -> None:
    adaptive = {
        "changes": 9,
        "throttling": 5,
        "min_limit": 4,
        "max_limit": 16,
        "paced": {"b/hot/": 95.04},
        "min_rate": 80.0,
    }
    report = _report(adaptive=adaptive, throttles_caused=12, throttles_ambient=25)
    text = run_summary(report, program="python", exit_code=0, wall_time=3.0)
    assert (
        "  limit        moved 4..16, now 12 (9 changes, 5 for throttling); paced at 80/s min, now: b/hot/ at 95/s"
        in (text)
    )
    assert "  retries      40 (40 throttled attempts: 12 caused by the pool's rate, 25 ambient)" in text
    assert "peak active" not in text and "of a limit of" not in text


def test_an_auto_limit_that_never_moved_nor_paced_says_so() -> None:
    adaptive = {"changes": 0, "throttling": 0, "min_limit": 10, "max_limit": 10, "paced": {}, "min_rate": None}
    assert adaptive_text(adaptive, 10) == "stayed at 10; never paced"
    paced_then_released = {**adaptive, "changes": 2, "min_limit": 4, "min_rate": 2.5}
    assert adaptive_text(paced_then_released, 10) == (
        "moved 4..10, now 10 (2 changes, 0 for throttling); paced at 2.5/s min, now: unpaced"
    )


def test_a_fixed_limit_keeps_its_peak_active_line() -> None:
    text = run_summary(_report(limit=8, peak_active=8), program="python", exit_code=0, wall_time=3.0)
    assert "  peak active  8 of a limit of 8" in text and "  retries      40 (40 throttled attempts)" in text
