"""The zero-code route: botocore's plugin variable and S3POOL_* settings, in unmodified programs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from s3pool_plugins import ConfigurationError, config_from_environment
from s3pool_plugins.testing import Action, Latency

SCRIPTS = Path(__file__).parent / "scripts"
PLUGIN = "s3pool=s3pool_plugins.adapters.botocore.plugin"


def _run(program: str, bucket: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / program), bucket], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("program", ["boto3_program.py", "s3fs_program.py"])
def test_an_unmodified_program_runs_under_the_pool(program, local_s3, chaos_proxy, s3_bucket) -> None:
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    env.update(
        BOTOCORE_EXPERIMENTAL__PLUGINS=PLUGIN,
        S3POOL_CONCURRENCY="2",
        S3POOL_RETRIES="7",
        S3POOL_RETRY_DELAY="0.001",
        S3POOL_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    chaos_proxy.configure(latency=Latency(0.01))
    # Six SlowDowns in a row for the first request: more than botocore's default retries
    # (legacy mode: 4) and than s3fs's, fewer than the pool's 7.
    chaos_proxy.inject(Action.THROTTLE, 6)
    done = _run(program, s3_bucket, env)
    assert done.returncode == 0, done.stderr[-3000:]
    chaos_proxy.wait_idle()
    seen = chaos_proxy.stats()
    assert seen.throttled == 6
    assert seen.attempts_for(f"{s3_bucket}/first", "PUT") == 7
    assert seen.in_flight_peak <= 2  # the program's 8 threads or s3fs's gather, held to the pool's limit


def test_without_the_plugin_the_same_program_gives_up(local_s3, chaos_proxy, s3_bucket) -> None:
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    chaos_proxy.inject(Action.THROTTLE, 6)
    done = _run("boto3_program.py", s3_bucket, env)
    assert done.returncode != 0 and "SlowDown" in done.stderr


def test_a_bad_setting_stops_the_program_with_a_clear_message(local_s3, chaos_proxy, s3_bucket) -> None:
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    env.update(BOTOCORE_EXPERIMENTAL__PLUGINS=PLUGIN, S3POOL_CONCURRENCY="lots")
    done = _run("boto3_program.py", s3_bucket, env)
    assert done.returncode == 2
    assert "S3POOL_CONCURRENCY" in done.stderr and "'lots'" in done.stderr
    assert chaos_proxy.stats().requests == 0  # nothing half-ran


def test_environment_settings_are_parsed_strictly() -> None:
    config = config_from_environment(
        {"S3POOL_CONCURRENCY": "12", "S3POOL_TIMEOUT": "none", "S3POOL_RETRY_BUDGET": "off", "S3POOL_SEED": "3"}
    )
    assert (config.concurrency, config.timeout, config.retry_budget, config.seed) == (12, None, False, 3)
    assert config_from_environment({"S3POOL_RETRYABLE_ERRORS": "SlowDown, 503"}).policy.retryable_errors == {
        "SlowDown",
        "503",
    }
    with pytest.raises(ConfigurationError, match="S3POOL_CONCURENCY"):
        config_from_environment({"S3POOL_CONCURENCY": "4"})  # a typo is not ignored
    with pytest.raises(ConfigurationError, match=r"S3POOL_CONCURRENCY.*an int >= 1"):
        config_from_environment({"S3POOL_CONCURRENCY": "0"})
    with pytest.raises(ConfigurationError, match=r"S3POOL_RETRY_DELAY.*a number"):
        config_from_environment({"S3POOL_RETRY_DELAY": "soon"})
    with pytest.raises(ConfigurationError, match="S3POOL_ENABLED"):
        config_from_environment({"S3POOL_ENABLED": "maybe"})


def test_the_body_idle_bound_comes_from_its_variable(local_s3, s3_bucket) -> None:
    env = local_s3.subprocess_env()
    env.update(BOTOCORE_EXPERIMENTAL__PLUGINS=PLUGIN, S3POOL_DISABLE_PLUGIN_AUTOLOAD="1")
    waits = subprocess.run(  # the default bound (60 s) keeps the slot through a short wait
        [sys.executable, str(SCRIPTS / "idle_body_program.py"), s3_bucket, "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert waits.returncode == 0 and waits.stdout.split() == ["held"], waits.stderr[-3000:]
    env["S3POOL_BODY_IDLE_TIMEOUT"] = "0.2"
    done = subprocess.run(  # a generous wait: only a loaded machine makes the 0.2 s bound take longer
        [sys.executable, str(SCRIPTS / "idle_body_program.py"), s3_bucket, "30"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.split() == ["reclaimed"], done.stderr[-3000:]


@pytest.mark.parametrize("text", ["0", "-1", "soon", "nan", "1e9"])
def test_a_bad_body_idle_bound_stops_the_program_naming_its_variable(local_s3, s3_bucket, text) -> None:
    env = local_s3.subprocess_env()
    env.update(BOTOCORE_EXPERIMENTAL__PLUGINS=PLUGIN, S3POOL_DISABLE_PLUGIN_AUTOLOAD="1", S3POOL_BODY_IDLE_TIMEOUT=text)
    done = _run("boto3_program.py", s3_bucket, env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "S3POOL_BODY_IDLE_TIMEOUT" in done.stderr and repr(text) in done.stderr
    assert "accepted: a number of seconds > 0 and <= 604800 (7 days)" in done.stderr
