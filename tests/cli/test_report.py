"""Run reports: the sketch survives JSON, reports merge exactly, the default pool writes one at exit."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap

from s3pool_plugins import QuantileSketch
from s3pool_plugins.core.report import (
    FORMAT,
    attach_from_environment,
    call_time_summary,
    load_reports,
    merge_reports,
    sketch_from_dict,
    sketch_to_dict,
)


def _report(pid: int, values: list[float], **counts: int) -> dict[str, object]:
    sketch = QuantileSketch()
    sketch.extend(values)
    base = {"calls": len(values), "succeeded": len(values), "failures": 0, "retries": 0, "throttles": 0}
    return {"format": FORMAT, "pid": pid, "started": pid, **base, **counts, "call_time": sketch_to_dict(sketch)}


def test_a_sketch_survives_json() -> None:
    rng = random.Random(3)
    sketch = QuantileSketch()
    sketch.extend(rng.lognormvariate(-3, 1) for _ in range(5000))
    back = sketch_from_dict(json.loads(json.dumps(sketch_to_dict(sketch))))
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        assert back.quantile(q) == sketch.quantile(q)
    assert (back.count, back.total, back.maximum) == (sketch.count, sketch.total, sketch.maximum)
    empty = sketch_from_dict(sketch_to_dict(QuantileSketch()))
    assert empty.count == 0 and empty.quantile(0.5) is None


def test_merged_reports_add_up_and_their_percentiles_are_those_of_all_calls() -> None:
    rng = random.Random(4)
    first = [rng.uniform(0.01, 0.05) for _ in range(300)]
    second = [rng.uniform(0.2, 0.9) for _ in range(100)]
    merged = merge_reports([_report(2, second, retries=3, throttles=2), _report(1, first, failures=1)])
    assert [p["pid"] for p in merged["processes"]] == [1, 2]  # in the order they started
    assert (merged["calls"], merged["retries"], merged["throttles"], merged["failures"]) == (400, 3, 2, 1)
    everything = QuantileSketch()
    everything.extend(first + second)
    summary = call_time_summary(merged["call_time"])
    assert summary["p95"] == everything.quantile(0.95) and summary["p50"] == everything.quantile(0.5)
    assert summary["count"] == 400


def test_foreign_or_broken_files_are_reported_not_merged(tmp_path) -> None:
    (tmp_path / "s3pool-1.json").write_text(json.dumps(_report(1, [0.1])))
    (tmp_path / "s3pool-2.json").write_text("{not json")
    (tmp_path / "s3pool-3.json").write_text(json.dumps({"format": "something-else"}))
    reports, problems = load_reports(sorted(tmp_path.iterdir()))
    assert [r["pid"] for r in reports] == [1]
    assert len(problems) == 2 and "s3pool-2.json" in problems[0] and "s3pool-3.json" in problems[1]


def test_without_the_variable_nothing_is_attached() -> None:
    assert attach_from_environment(object(), {}) is None
    assert attach_from_environment(object(), {"S3POOL_REPORT": "  "}) is None


def test_the_default_pool_writes_a_file_per_pid_at_exit(tmp_path) -> None:
    program = textwrap.dedent(
        """
        from s3pool_plugins import default_pool

        pool = default_pool()
        assert pool.submit(sum, [1, 2]).result() == 3
        pool.options(name="flaky").submit(int, "x").exception()
        """
    )
    env = {"S3POOL_REPORT": str(tmp_path / "run-{pid}.json"), "S3POOL_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run(
        [sys.executable, "-c", program], env={**_base_env(), **env}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (path,) = tmp_path.iterdir()
    data = json.loads(path.read_text())
    assert path.name == f"run-{data['pid']}.json"
    assert (data["calls"], data["succeeded"], data["failures"]) == (2, 1, 1)
    assert data["operations"]["flaky"] == {"calls": 1, "failures": 1}
    assert data["pools"][0]["name"] == "s3pool-default"


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("S3POOL_", "AWS_", "BOTOCORE_"))}


def test_an_expected_answer_is_no_failure_in_the_run_summary(make_pool) -> None:
    from s3pool_plugins import expected_errors
    from s3pool_plugins.core.report import CallRecorder

    recorder = CallRecorder()
    pool = make_pool(retries=0, plugins=[recorder])

    call = pool.begin_call("HeadObject")
    call.start_attempt()
    with expected_errors(lambda error: isinstance(error, FileNotFoundError)):
        call.finish(FileNotFoundError("no such key"))
    failing = pool.begin_call("HeadObject")
    failing.start_attempt()
    failing.finish(OSError("broken"))
    pool.drain(timeout=5)
    _, by_name = recorder.snapshot()
    assert by_name["HeadObject"] == {"calls": 2, "failures": 1}


def test_a_forked_child_refreshes_its_report_while_it_runs(tmp_path) -> None:
    # The refresh thread feeds the live status line; threads do not survive a fork, so a child
    # (multiprocessing's fork start method) showed nothing until it ended.
    program = textwrap.dedent(
        """
        import json, os, sys, time
        from s3pool_plugins import default_pool

        pool = default_pool()
        assert pool.submit(sum, [1, 2]).result() == 3
        pid = os.fork()
        if pid == 0:
            path = os.path.join(sys.argv[1], f"run-{os.getpid()}.json")
            deadline = time.monotonic() + 10
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.05)
            os._exit(0 if os.path.exists(path) else 3)  # no exit hooks: only the refresh can have written it
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    env = {
        "S3POOL_REPORT": str(tmp_path / "run-{pid}.json"),
        "S3POOL_REPORT_REFRESH": "0.1",
        "S3POOL_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", program, str(tmp_path)],
        env={**_base_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
