"""The project installs beside aws-cli v1 and boto3, and pools aws-cli.

This installs from the package index into a fresh virtual environment, so it
runs in CI (``CI`` set) or when asked with ``CHECK_INSTALL_BESIDE_AWSCLI=1``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
Completed = subprocess.CompletedProcess[str]

pytestmark = [
    pytest.mark.skipif(
        not (os.environ.get("CI") or os.environ.get("CHECK_INSTALL_BESIDE_AWSCLI")),
        reason="installs aws-cli from the package index (runs in CI, or with CHECK_INSTALL_BESIDE_AWSCLI=1)",
    ),
    pytest.mark.timeout(600),
]


def _run(*argv: str | Path, env: dict[str, str] | None = None, timeout: float = 400) -> Completed:
    return subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=timeout)


def test_installs_beside_awscli_v1_and_boto3_and_pools_aws(tmp_path: Path, local_s3, s3_bucket, chaos_proxy) -> None:
    venv = tmp_path / "venv"
    created = _run(sys.executable, "-m", "venv", venv)
    assert created.returncode == 0, created.stderr
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    installed = _run(python, "-m", "pip", "install", "-q", "awscli", "boto3", ROOT)
    assert installed.returncode == 0, installed.stderr[-4000:]
    checked = _run(python, "-m", "pip", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    version = _run(bin_dir / "aws", "--version")
    assert version.returncode == 0 and version.stdout.startswith("aws-cli/1."), version.stdout + version.stderr
    # aws-cli 1.45 and earlier pin botocore exactly (later releases carry their own copy): that resolves too.
    pinned = _run(python, "-m", "pip", "install", "-q", "--dry-run", "--ignore-installed", "awscli<1.46", "boto3", ROOT)
    assert pinned.returncode == 0, pinned.stderr[-4000:]

    # No extra was asked for: the fsspec layer is absent and says which extra brings it.
    probe = "from s3pool_plugins import install_fsspec"
    missing = _run(python, "-c", probe)
    assert missing.returncode == 1 and "s3pool-plugins[fsspec]" in missing.stderr, missing.stderr

    local_s3.client().put_object(Bucket=s3_bucket, Key="listed/by-aws-cli.txt", Body=b"hello")
    report = tmp_path / "report.json"
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    aws_ls = [bin_dir / "aws", "s3", "ls", f"s3://{s3_bucket}/listed/"]
    pooled = [bin_dir / "s3pool", "run", "--no-otel", "--retry-delay", "0.01", "--report", report, "--", *aws_ls]
    listed = _run(*pooled, env=env, timeout=120)
    assert listed.returncode == 0, listed.stderr[-4000:]
    assert "by-aws-cli.txt" in listed.stdout
    chaos_proxy.wait_idle()
    data = json.loads(report.read_text())
    assert data["operations"].get("S3.ListObjectsV2", {}).get("calls") == 1, data
    assert data["calls"] + data["retries"] == chaos_proxy.stats().requests  # every request went through the pool

    # Under the pool, aws-cli makes as many attempts as it does on its own (its retries are not cut).
    chaos_proxy.configure(throttle_rate=1.0)
    attempts = []
    for argv in (aws_ls, pooled):
        chaos_proxy.reset_counts()
        throttled = _run(*argv, env=env, timeout=120)
        assert throttled.returncode != 0 and "SlowDown" in throttled.stderr, throttled.stderr[-4000:]
        chaos_proxy.wait_idle()
        attempts.append(chaos_proxy.stats().requests)
    assert attempts[0] >= 3 and attempts[1] == attempts[0], attempts
