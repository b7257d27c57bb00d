"""`s3pool bench`: bad arguments stop before anything runs; a short real run gives consistent figures."""

from __future__ import annotations

import json

import pytest

from s3pool_plugins.cli import main
from s3pool_plugins.cli.bench.measures import calm_after_drop, drop_and_recovery, reached_at, recovered_after
from s3pool_plugins.cli.bench.runner import RunRecord


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *argv])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("usage: s3pool bench"), captured.err
    assert "s3pool bench:" not in captured.out  # nothing started
    return captured.err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--scenario", "nope"], "argument --scenario: invalid choice: 'nope'"),
        (["--competitor", "boto4"], "argument --competitor: invalid choice: 'boto4'"),
        (["--duration", "0"], "argument --duration: expected a number of seconds >= 3"),
        (["--duration", "soon"], "argument --duration: expected a number of seconds >= 3"),
        (["--rate", "-5"], "argument --rate: expected a number per second > 0"),
        (["--latency", "-1"], "argument --latency: expected a number of milliseconds >= 0"),
        (["--high-latency", "slow"], "argument --high-latency: expected a number of milliseconds >= 0"),
        (["--workers", "0"], "argument --workers: expected an integer >= 1"),
        (["--limit", "x"], "argument --limit: expected an integer >= 1"),
        (["--fixed-limits", "4,,0"], "argument --fixed-limits: expected comma-separated integers >= 1"),
        (["--seed", "-1"], "argument --seed: expected an integer >= 0"),
        (["--auto-scope", "global"], "argument --auto-scope: invalid choice: 'global'"),
        (["--warmup", "10", "--duration", "6"], "argument --warmup: 10 s leaves less than 1 s to measure"),
        (["--scenario", "tenants", "--workers", "1"], "argument --workers: the tenants scenario needs at least 2"),
    ],
)
def test_each_bad_argument_is_named_and_nothing_runs(capsys, argv, expected) -> None:
    assert expected in _usage_error(capsys, *argv)


def test_a_json_file_in_a_missing_folder_is_refused(capsys, tmp_path) -> None:
    error = _usage_error(capsys, "--json", str(tmp_path / "missing" / "bench.json"))
    assert "argument --json: the folder" in error and "does not exist" in error
    assert "is a folder, not a file" in _usage_error(capsys, "--json", str(tmp_path))


def test_a_short_run_gives_consistent_figures(capsys, tmp_path) -> None:
    path = tmp_path / "bench.json"
    argv = ["bench", "--scenario", "throttled", "--competitor", "boto3", "--competitor", "pool-fixed"]
    argv += ["--duration", "3", "--warmup", "1", "--workers", "8", "--json", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1. throttled:" in out and "boto3 standard" in out and "pool fixed 16" in out
    document = json.loads(path.read_text())
    assert document["format"] == "s3pool-bench/1"
    assert document["settings"]["seed"] == 1 and document["settings"]["workers"] == 8
    [scenario] = document["scenarios"]
    assert scenario["name"] == "throttled" and scenario["rate"] == 100 and scenario["duration"] == 3
    runs = {run["competitor"]: run for run in scenario["runs"]}
    assert set(runs) == {"boto3", "pool-fixed"}
    for run in runs.values():
        assert run["status"] == "ok", run
        series = run["series"]
        assert all(len(series[name]) == 3 for name in ("succeeded", "failed", "requests", "throttled", "capacity"))
        assert series["capacity"] == [100, 100, 100]
        measures = run["measures"]
        assert measures["goodput"] > 0
        assert measures["goodput_of_rate"] == pytest.approx(measures["goodput"] / 100)
        assert 0 <= measures["throttled_share"] <= 1
        assert measures["attempts_per_call"] >= 1
        assert run["calls"] >= sum(series["succeeded"]) + sum(series["failed"])
        assert run["proxy_requests"] >= sum(series["requests"]) >= sum(series["throttled"])
        assert run["proxy_throttled"] >= sum(series["throttled"])
        assert run["failures"] == sum(run["errors"].values())
        assert [t["name"] for t in measures["targets"]] == ["goodput", "503s", "attempts"]
        assert all(t["met"] in (True, False) for t in measures["targets"])
    assert runs["boto3"]["series"]["limits"] == [None, None, None]
    assert runs["pool-fixed"]["series"]["limits"] == [16, 16, 16]


def _record(succeeded: list[int], requests: list[int], throttled: list[int], capacity: list[float]) -> RunRecord:
    return RunRecord(
        scenario="capacity-drop",
        competitor="x",
        label="x",
        limit=None,
        duration=len(succeeded),
        warmup=1,
        succeeded=succeeded,
        failed=[0] * len(succeeded),
        requests=requests,
        throttled=throttled,
        capacity=list(capacity),
    )


def test_the_drop_and_recovery_measures_on_synthetic_series() -> None:
    capacity = [100.0] * 3 + [25.0] * 3 + [100.0] * 3
    record = _record(
        succeeded=[100, 100, 100, 20, 25, 25, 50, 95, 100],
        requests=[100, 100, 100, 80, 25, 25, 50, 95, 100],
        throttled=[0, 0, 0, 60, 0, 0, 0, 0, 0],
        capacity=capacity,
    )
    assert drop_and_recovery(record) == (3, 6)
    assert calm_after_drop(record, 3, 6) == 1
    assert recovered_after(record, 6) == 2
    record.throttled[5] = 1  # 1 of 50 from second 4 on (2%), 1 of 25 in the last second: never calm
    assert calm_after_drop(record, 3, 6) is None
    record.requests[4], record.requests[5] = 400, 400  # 1 of 800 (0.125%) from second 4 on: calm again
    assert calm_after_drop(record, 3, 6) == 1
    assert reached_at(record, 100) == 2 and reached_at(record, 101) is None  # a 2-second mean, from the start
