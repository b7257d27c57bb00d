"""Benchmark: ``aws s3 sync`` (aws-cli v1) with and without ``s3pool run --concurrency auto``, at random 503s.

Run from the repository root::

    python benchmarks/bench_awscli_sync.py                      # 1,000 small files and 3 x 20 MiB, both ways
    python benchmarks/bench_awscli_sync.py --set small --json out.json
    python benchmarks/bench_awscli_sync.py --venv /tmp/awscli-venv   # reuse (or create once) the venv

aws-cli v1 comes from the package index into a separate virtual
environment beside this package (``--venv``; default a throwaway one in a
temporary folder), with this checkout installed into it, as
``tests/adapters/test_install_beside_awscli.py`` does. A moto S3 server
(:class:`~s3pool_plugins.testing.LocalS3`) runs behind a seeded
:class:`~s3pool_plugins.testing.ChaosProxy` that answers ``--throttle``
(default 20%) of all requests 503 ``SlowDown`` at random, whatever the rate.

For each set of files and each direction, the same ``aws s3 sync`` runs
without the pool and under ``s3pool run --no-otel --concurrency auto``, in
the same run, ``--repeat`` times each (the order alternates between
repeats). An upload syncs a local folder to a fresh prefix; a download
syncs a prefix written beforehand (directly, not through the proxy) to a
fresh folder. Each run is checked: aws-cli's exit status and the number of
files that arrived. Figures: wall time, requests and 503s at the proxy, and
under the pool its report (calls, retries, caused and ambient 503s, the
range of the limit). The target is a pooled wall time of at most 1.1 times
the plain one. Read the ratios, not the absolute times: everything shares
the machine's CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from s3pool_plugins.testing import ChaosProxy, LocalS3

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.10
MiB = 1024 * 1024


@dataclass(frozen=True)
class FileSet:
    name: str
    count: int
    size: int


@dataclass
class Run:
    files: str
    direction: str
    mode: str
    repeat: int
    seconds: float
    exit_code: int
    arrived: int
    expected: int
    requests: int
    throttled: int
    report: dict[str, Any] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    """aws-cli's lines about files it could not sync."""
    stderr_tail: str = ""


def _run(argv: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)


def prepare_venv(folder: Path) -> Path:
    """A venv in ``folder`` with aws-cli v1, boto3 and this checkout; its ``bin`` folder.

    A venv made before is reused, with this checkout installed again (without
    its dependencies) so the figures are this checkout's.
    """
    aws = folder / "bin" / "aws"
    if aws.exists() and (folder / "bin" / "s3pool").exists():
        again = _run([folder / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", ROOT])
        if again.returncode != 0:
            raise SystemExit(f"could not install this checkout into {folder}: {again.stderr[-4000:]}")
        return folder / "bin"
    print(f"installing aws-cli v1 and this checkout into {folder} ...", flush=True)
    created = _run([sys.executable, "-m", "venv", folder])
    if created.returncode != 0:
        raise SystemExit(f"could not create the venv: {created.stderr}")
    installed = _run([folder / "bin" / "python", "-m", "pip", "install", "-q", "awscli", "boto3", ROOT])
    if installed.returncode != 0:
        raise SystemExit(f"could not install aws-cli: {installed.stderr[-4000:]}")
    version = _run([aws, "--version"])
    if not (version.stdout + version.stderr).startswith("aws-cli/1."):
        raise SystemExit(f"not aws-cli v1: {version.stdout}{version.stderr}")
    return folder / "bin"


def _write_files(folder: Path, files: FileSet) -> None:
    folder.mkdir(parents=True)
    for index in range(files.count):
        head = f"{files.name}:{index}:".encode()
        (folder / f"f{index:05d}.bin").write_bytes(head + b"x" * (files.size - len(head)))


def _seed_prefix(server: LocalS3, bucket: str, prefix: str, folder: Path) -> None:
    client = server.client()
    for path in sorted(folder.iterdir()):
        client.upload_file(str(path), bucket, f"{prefix}{path.name}")
    client.close()


def _count_objects(server: LocalS3, bucket: str, prefix: str) -> int:
    client = server.client()
    total = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        total += page.get("KeyCount", 0)
    client.close()
    return total


def bench(args: argparse.Namespace, bin_dir: Path, work: Path) -> list[Run]:
    sets = [FileSet("small", args.files, args.file_size), FileSet("large", args.large_files, args.large_size)]
    sets = [s for s in sets if args.set in ("all", s.name)]
    runs: list[Run] = []
    work.mkdir(parents=True, exist_ok=True)
    with LocalS3() as server, ChaosProxy(server.endpoint_url, seed=args.seed) as proxy:
        bucket = server.create_bucket()
        env = server.subprocess_env(endpoint_url=proxy.endpoint_url)
        config = work / "aws-config"
        config.write_text("[default]\n")  # aws-cli's defaults, whatever this machine's ~/.aws/config says
        env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(config))
        env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
        env.pop("PYTHONPATH", None)  # the venv's installed copy of this checkout, nothing else
        for files in sets:
            source = work / f"source-{files.name}"
            _write_files(source, files)
            _seed_prefix(server, bucket, f"seeded-{files.name}/", source)
            for direction in args.direction:
                for repeat in range(args.repeat):
                    modes = ["plain", "pooled"] if repeat % 2 == 0 else ["pooled", "plain"]
                    for mode in modes:
                        tag = f"{files.name}-{direction}-{mode}-{repeat}"
                        if direction == "upload":
                            prefix = f"{tag}/"
                            sync = ["aws", "s3", "sync", "--only-show-errors", str(source), f"s3://{bucket}/{prefix}"]
                        else:
                            destination = work / tag
                            sync = [
                                "aws",
                                "s3",
                                "sync",
                                "--quiet",
                                f"s3://{bucket}/seeded-{files.name}/",
                                str(destination),
                            ]
                        report = work / f"{tag}.json"
                        argv = sync
                        if mode == "pooled":
                            argv = ["s3pool", "run", "--no-otel", "--concurrency", "auto", "--report", str(report)]
                            argv += [*args.run_option, "--", *sync]
                        proxy.configure(throttle_rate=args.throttle)
                        proxy.reseed(args.seed + repeat)
                        proxy.reset_counts()
                        started = time.monotonic()
                        done = _run(argv, env=env, timeout=args.timeout)
                        seconds = time.monotonic() - started
                        proxy.wait_idle(timeout=10)
                        seen = proxy.stats()
                        proxy.configure(throttle_rate=0.0)
                        if direction == "upload":
                            arrived = _count_objects(server, bucket, prefix)
                        else:
                            arrived = sum(1 for _ in destination.iterdir()) if destination.exists() else 0
                        pooled = json.loads(report.read_text()) if report.exists() else {}
                        run = Run(
                            files=files.name,
                            direction=direction,
                            mode=mode,
                            repeat=repeat,
                            seconds=seconds,
                            exit_code=done.returncode,
                            arrived=arrived,
                            expected=files.count,
                            requests=seen.requests,
                            throttled=seen.throttled,
                            report=_report_figures(pooled),
                            failed=[line for line in done.stderr.splitlines() if " failed: " in line][:20],
                            stderr_tail=done.stderr[-1500:],
                        )
                        runs.append(run)
                        print(_line(run), flush=True)
                        for line in run.failed:
                            print(f"    {line}", flush=True)
    return runs


def _report_figures(report: dict[str, Any]) -> dict[str, Any]:
    names = ("calls", "retries", "throttles", "throttles_caused", "throttles_ambient", "failures", "adaptive")
    return {name: report.get(name) for name in names if name in report}


def _line(run: Run) -> str:
    text = (
        f"{run.files:5} {run.direction:8} {run.mode:6} #{run.repeat}: {run.seconds:7.1f} s, exit {run.exit_code}, "
        f"{run.arrived}/{run.expected} files, {run.requests} requests, {run.throttled} 503s"
    )
    if run.report:
        r = run.report
        adaptive = r.get("adaptive") or {}
        text += (
            f" | pool: {r.get('calls')} calls, {r.get('retries')} retries, "
            f"503s {r.get('throttles_caused')} caused / {r.get('throttles_ambient')} ambient, "
            f"limit {adaptive.get('min_limit')}..{adaptive.get('max_limit')}, slowest pace {adaptive.get('min_rate')}"
        )
    return text


def summary(runs: list[Run]) -> list[dict[str, Any]]:
    """Per (files, direction): the mean wall times and the pooled/plain ratio against the target."""
    rows = []
    for files in dict.fromkeys(r.files for r in runs):
        for direction in dict.fromkeys(r.direction for r in runs if r.files == files):
            mine = [r for r in runs if r.files == files and r.direction == direction]
            plain = [r.seconds for r in mine if r.mode == "plain"]
            pooled = [r.seconds for r in mine if r.mode == "pooled"]
            if not plain or not pooled:
                continue
            ratio = (sum(pooled) / len(pooled)) / (sum(plain) / len(plain))
            complete = all(r.arrived == r.expected and r.exit_code == 0 for r in mine)
            rows.append(
                {
                    "files": files,
                    "direction": direction,
                    "plain_seconds": sum(plain) / len(plain),
                    "pooled_seconds": sum(pooled) / len(pooled),
                    "ratio": ratio,
                    "met": ratio <= TARGET,
                    "complete": complete,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--venv", type=Path, help="the venv with aws-cli v1 (made there if missing; default: throwaway)"
    )
    parser.add_argument("--set", choices=("small", "large", "all"), default="all")
    parser.add_argument("--direction", action="append", choices=("upload", "download"))
    parser.add_argument("--files", type=int, default=1000, help="small files (default 1000)")
    parser.add_argument("--file-size", type=int, default=1024, help="bytes per small file (default 1024)")
    parser.add_argument("--large-files", type=int, default=3, help="large files (default 3)")
    parser.add_argument("--large-size", type=int, default=20 * MiB, help="bytes per large file (default 20 MiB)")
    parser.add_argument("--throttle", type=float, default=0.2, help="share of requests answered 503 (default 0.2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one sync may take (default 1800)")
    parser.add_argument("--json", type=Path, help="also write every run and the summary as JSON")
    parser.add_argument(
        "--run-option",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument added to s3pool run's (repeatable; later ones win), e.g. --run-option=--concurrency=10",
    )
    args = parser.parse_args(argv)
    if args.files < 1 or args.large_files < 1 or args.repeat < 1 or args.file_size < 1 or args.large_size < 1:
        parser.error("argument --files/--large-files/--file-size/--large-size/--repeat: expected integers >= 1")
    if not 0 <= args.throttle < 1:
        parser.error(f"argument --throttle: expected a share in [0, 1), got {args.throttle}")
    args.direction = list(dict.fromkeys(args.direction or ["upload", "download"]))
    with tempfile.TemporaryDirectory(prefix="s3pool-awscli-") as temporary:
        work = Path(temporary)
        bin_dir = prepare_venv(args.venv if args.venv is not None else work / "venv")
        runs = bench(args, bin_dir, work / "data")
    rows = summary(runs)
    print()
    for row in rows:
        print(
            f"{row['files']:5} {row['direction']:8}: plain {row['plain_seconds']:.1f} s, pooled "
            f"{row['pooled_seconds']:.1f} s, ratio {row['ratio']:.2f} (target <= {TARGET}: "
            f"{'met' if row['met'] else 'missed'}){'' if row['complete'] else ', INCOMPLETE runs'}"
        )
    if args.json is not None:
        document = {
            "throttle": args.throttle,
            "seed": args.seed,
            "run_options": args.run_option,
            "runs": [asdict(r) for r in runs],
            "summary": rows,
        }
        args.json.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
