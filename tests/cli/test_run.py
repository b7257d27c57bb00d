"""`s3pool run`: exit statuses, signals, and unmodified programs against LocalS3, checked at the proxy."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from s3pool_plugins.cli import main
from s3pool_plugins.testing import Action, Latency

SCRIPTS = Path(__file__).parent / "scripts"


def _s3pool(*argv: str, env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3pool_plugins", *argv], env=env, capture_output=True, text=True, timeout=timeout
    )


def _pooled_uploads(
    env: dict[str, str], report: Path, bucket: str, count: int, *options: str
) -> subprocess.CompletedProcess[str]:
    """``s3pool run OPTIONS --no-otel --report REPORT -- python uploads.py BUCKET COUNT``."""
    argv = ["run", *options, "--no-otel", "--report", str(report), "--"]
    return _s3pool(*argv, sys.executable, str(SCRIPTS / "uploads.py"), bucket, str(count), env=env)


def test_the_exit_status_is_passed_through(capsys) -> None:
    assert main(["run", "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert main(["run", "--quiet", "--", sys.executable, "-c", "pass"]) == 0
    err = capsys.readouterr().err
    assert "exited with status 3" in err and "no S3 calls were pooled" in err


def test_a_program_killed_by_a_signal_gives_128_plus_its_number() -> None:
    kill_self = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    assert main(["run", "--quiet", "--", sys.executable, "-c", kill_self]) == 128 + signal.SIGKILL


def test_sigterm_is_forwarded_to_the_program() -> None:
    # The pause lets s3pool install its handlers after starting the program, before the test signals it.
    program = "import time; time.sleep(0.3); print('ready', flush=True); time.sleep(60)"
    with subprocess.Popen(
        [sys.executable, "-m", "s3pool_plugins", "run", "--", sys.executable, "-c", program],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as command:
        assert command.stdout is not None and command.stdout.readline() == "ready\n"
        command.send_signal(signal.SIGTERM)
        status = command.wait(timeout=30)
        err = command.stderr.read() if command.stderr is not None else ""
    assert status == 128 + signal.SIGTERM, err
    assert f"exited with status {128 + signal.SIGTERM}" in err


def test_an_unmodified_boto3_program_is_pooled_and_summarised(local_s3, s3_bucket, chaos_proxy, tmp_path) -> None:
    chaos_proxy.configure(latency=Latency(0.005))
    chaos_proxy.inject(Action.THROTTLE, 4)
    report = tmp_path / "report.json"
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    done = _pooled_uploads(env, report, s3_bucket, 30, "--concurrency", "3", "--retries", "6", "--retry-delay", "0.001")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "uploads done\n"  # the program's output is its own; the summary goes to stderr
    chaos_proxy.wait_idle()
    seen = chaos_proxy.stats()
    data = json.loads(report.read_text())
    assert data["format"] == "s3pool-run/1" and data["exit_code"] == 0
    assert data["settings"] == {
        "S3POOL_CONCURRENCY": "3",
        "S3POOL_RETRIES": "6",
        "S3POOL_RETRY_DELAY": "0.001",
        "S3POOL_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    assert len(data["processes"]) == 1
    assert data["calls"] == 31 and data["succeeded"] == 31 and data["failures"] == 0  # 30 puts and a head
    assert data["operations"] == {
        "S3.HeadObject": {"calls": 1, "failures": 0},
        "S3.PutObject": {"calls": 30, "failures": 0},
    }
    assert data["throttles"] == seen.throttled == 4
    assert data["retries"] == 4
    assert data["calls"] + data["retries"] == seen.requests  # every attempt reached the proxy once
    assert data["limit"] == 3 and 1 <= data["peak_active"] <= 3
    assert seen.in_flight_peak <= 3  # the program's 8 threads held to the pool's limit
    times = data["call_time"]
    assert times["count"] == 31
    assert 0.005 <= times["p50"] <= times["p95"] <= times["p99"] <= times["max"]
    summary = done.stderr
    assert "S3 calls     31 (31 succeeded, 0 failed)" in summary
    assert "retries      4 (4 throttled attempts)" in summary
    assert "peak active" in summary and "of a limit of 3" in summary
    assert "PutObject 30, HeadObject 1" in summary


@pytest.mark.parametrize(
    ("method", "extra"),
    [("fork", []), ("spawn", []), ("fork", ["--parent-first"])],
    ids=["fork", "spawn", "pool-forked"],
)
def test_reports_of_several_processes_are_merged(local_s3, s3_bucket, chaos_proxy, tmp_path, method, extra) -> None:
    """Each process reports its own calls, also a child forked after its parent's pool had work."""
    if method not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"multiprocessing has no {method!r} start method on this platform")
    chaos_proxy.inject(Action.THROTTLE, 2)
    report = tmp_path / "report.json"
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    argv = ["run", "--retry-delay", "0.001", "--no-otel", "--report", str(report), "--"]
    done = _s3pool(*argv, sys.executable, str(SCRIPTS / "processes.py"), s3_bucket, method, *extra, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    chaos_proxy.wait_idle()
    seen = chaos_proxy.stats()
    data = json.loads(report.read_text())
    processes = data["processes"]
    assert sorted(p["calls"] for p in processes) == [5, 7]  # the child's 7 and the parent's 5, each once
    assert len({p["pid"] for p in processes}) == 2
    assert data["calls"] == 12 and data["throttles"] == seen.throttled == 2
    assert data["calls"] + data["retries"] == seen.requests
    assert data["call_time"]["count"] == 12
    assert "S3 calls     12 (12 succeeded, 0 failed) in 2 processes" in done.stderr


def test_a_failing_program_still_gets_its_summary(local_s3, s3_bucket, chaos_proxy, tmp_path) -> None:
    chaos_proxy.limit_prefix(f"{s3_bucket}/uploads/0", writes_per_second=0)  # the first object never goes in
    report = tmp_path / "report.json"
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    done = _pooled_uploads(env, report, s3_bucket, 3, "--retries", "2", "--retry-delay", "0.001")
    assert done.returncode == 1 and "SlowDown" in done.stderr
    data = json.loads(report.read_text())
    assert data["exit_code"] == 1 and data["failures"] == 1
    assert data["throttles"] == chaos_proxy.stats().throttled == 3  # three attempts, all refused
    assert data["operations"]["S3.PutObject"] == {"calls": 3, "failures": 1}
    assert "1 failed" in done.stderr and "exited with status 1" in done.stderr


def test_an_auto_pool_reports_what_its_limit_did(local_s3, s3_bucket, chaos_proxy, tmp_path) -> None:
    chaos_proxy.limit_prefix(f"{s3_bucket}/", writes_per_second=40, burst=4)
    report = tmp_path / "report.json"
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    options = ["--concurrency", "auto", "--max-concurrency", "8", "--auto-scope", "bucket"]
    options += ["--adjustment-interval", "0.2", "--retries", "20", "--retry-delay", "0.01"]
    done = _pooled_uploads(env, report, s3_bucket, 80, *options)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["settings"]["S3POOL_CONCURRENCY"] == "auto" and data["settings"]["S3POOL_AUTO_SCOPE"] == "bucket"
    assert data["failures"] == 0 and data["throttles"] == chaos_proxy.stats().throttled > 0
    adaptive = data["adaptive"]
    assert adaptive["throttling"] >= 1 and adaptive["changes"] >= adaptive["throttling"]
    assert 1 <= adaptive["min_limit"] <= adaptive["max_limit"] <= 8
    assert list(adaptive["paced"]) == [s3_bucket] and adaptive["paced"][s3_bucket] > 0
    assert 0 < adaptive["min_rate"] <= min(adaptive["paced"].values())
    assert 0 <= data["throttles_caused"] + data["throttles_ambient"] <= data["throttles"]
    low, high = adaptive["min_limit"], adaptive["max_limit"]
    moved = f"moved {low}..{high}, now {data['limit']}" if low != high else f"stayed at {low}"
    assert f"  limit        {moved}" in done.stderr, done.stderr
    assert f"; paced at {adaptive['min_rate']:.3g}/s min, now: {s3_bucket} at" in done.stderr, done.stderr
    assert f"{data['throttles_caused']} caused by the pool's rate, {data['throttles_ambient']} ambient" in done.stderr
    assert "peak active" not in done.stderr


def test_body_idle_timeout_reaches_the_programs_bodies(local_s3, s3_bucket) -> None:
    program = [sys.executable, str(Path(__file__).parents[1] / "adapters" / "scripts" / "idle_body_program.py")]
    env = local_s3.subprocess_env()
    done = _s3pool(
        "run", "--quiet", "--no-otel", "--body-idle-timeout", "0.2", "--", *program, s3_bucket, "30", env=env
    )
    assert done.returncode == 0 and done.stdout.split() == ["reclaimed"], done.stderr[-3000:]
