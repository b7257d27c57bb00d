"""`s3pool bench`: bad arguments stop before anything runs; a short real run gives consistent figures."""

from __future__ import annotations

import json

import pytest

from s3pool_plugins.cli import main
from s3pool_plugins.cli.bench.measures import (
    calm_after_drop,
    drop_and_recovery,
    measure,
    reached_at,
    recovered_after,
)
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
        (["--job", "0"], "argument --job: expected an integer >= 1"),
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


def test_the_scenarios_in_company_run_and_give_their_figures(capsys, tmp_path) -> None:
    """Ambient 503s, the throttled prefix plus random 503s, and a short job measured whole; tiny sizes."""
    path = tmp_path / "bench.json"
    argv = ["bench", "--scenario", "ambient-20", "--scenario", "mixed", "--scenario", "short-job"]
    argv += ["--competitor", "boto3", "--competitor", "pool-fixed", "--competitor", "pool-auto"]
    argv += ["--duration", "3", "--warmup", "1", "--workers", "8", "--job", "40", "--json", str(path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ambient-20:" in out and "7. mixed:" in out and "8. short-job:" in out
    assert "attempts/call (<= 1.30)" in out and "503s (<= 6%)" in out and "40 PUTs" in out
    scenarios = {s["name"]: s for s in json.loads(path.read_text())["scenarios"]}
    assert list(scenarios) == ["ambient-20", "mixed", "short-job"]
    ambient, mixed, job = scenarios["ambient-20"], scenarios["mixed"], scenarios["short-job"]
    assert (ambient["ambient"], ambient["rate"], mixed["ambient"], mixed["rate"]) == (0.2, None, 0.05, 100)
    assert set(ambient["baselines"]) == {"boto3", "pool-fixed"}
    for scenario in scenarios.values():
        assert [run["competitor"] for run in scenario["runs"]] == ["boto3", "pool-fixed", "pool-auto"]
        for run in scenario["runs"]:
            assert run["status"] == "ok", run
            assert all(t["met"] in (True, False) for t in run["measures"]["targets"]), run["measures"]
    for run in ambient["runs"]:
        m = run["measures"]
        assert [t["name"] for t in m["targets"]] == ["fixed", "boto3", "attempts"]
        assert m["goodput_of_fixed"] == pytest.approx(m["goodput"] / ambient["baselines"]["pool-fixed"])
        assert m["attempts_target"] == pytest.approx(1 / 0.8 + 0.05)
        assert run["proxy_throttled"] > 0  # the random 503s happened without any rate limit
        assert run["series"]["capacity"] == [None, None, None]
    for run in mixed["runs"]:
        assert [t["name"] for t in run["measures"]["targets"]] == ["goodput", "503s"]
    assert job["job"] == 40 and job["warmup"] == 0
    for run in job["runs"]:
        m = run["measures"]
        assert run["calls"] == 40 and not run["cut_off"]  # every PUT of the job, nothing left out
        assert m["goodput"] == pytest.approx((40 - run["failures"]) / run["job_time"])
        assert m["throttled_share"] == pytest.approx(run["proxy_throttled"] / run["proxy_requests"])
        assert run["duration"] == len(run["series"]["requests"]) <= int(run["job_time"]) + 2
        assert [t["name"] for t in m["targets"]] == ["503s", "goodput"]


def test_the_targets_in_company_on_synthetic_records() -> None:
    record = RunRecord(
        scenario="ambient-20",
        competitor="pool-auto",
        label="pool auto",
        limit=None,
        duration=3,
        warmup=1,
        ambient=0.2,
        succeeded=[50, 90, 90],
        failed=[0, 0, 0],
        requests=[60, 110, 110],
        throttled=[10, 20, 20],
        capacity=[None, None, None],
        calls=230,
        proxy_requests=299,
    )
    m = measure(record, {}, None, {"pool-fixed": 100.0, "boto3": 90.0})
    targets = {t["name"]: t["met"] for t in m["targets"]}
    assert m["goodput_of_fixed"] == pytest.approx(0.9) and m["goodput_of_boto3"] == pytest.approx(1.0)
    assert targets == {"fixed": True, "boto3": True, "attempts": True}  # 1.3 attempts: at the limit
    record.proxy_requests = 300
    assert {t["name"]: t["met"] for t in measure(record, {}, None, {"pool-fixed": 101.0})["targets"]} == {
        "fixed": False,
        "boto3": None,  # no boto3 run to compare with
        "attempts": False,
    }
    job = RunRecord(
        scenario="short-job",
        competitor="pool-auto",
        label="pool auto",
        limit=None,
        duration=7,
        rate=100.0,
        job=600,
        job_time=6.5,
        calls=600,
        proxy_requests=612,
        proxy_throttled=12,
    )
    m = measure(job, {}, None)
    assert m["goodput"] == pytest.approx(600 / 6.5) and m["throttled_share"] == pytest.approx(12 / 612)
    assert [t["met"] for t in m["targets"]] == [True, True]
    job.cut_off = True
    assert [t["met"] for t in measure(job, {}, None)["targets"]] == [False, False]
