"""Benchmark: GetObject throughput with fast bodies, now that a body holds its call's slot until read.

Run from the repository root::

    python benchmarks/bench_bodies.py                          # bare boto3 against the pool (about 3 minutes)
    python benchmarks/bench_bodies.py --baseline-rev c98915b   # and against the pool as it was at that commit
    python benchmarks/bench_bodies.py --quick                  # smoke run (about 30 s)
    python benchmarks/bench_bodies.py --json out.json --strict

A body that keeps its slot until it is read bounds what is on the wire, and
it could cost throughput: before, a thread read its body after giving its
slot back, so body reads overlapped beyond the limit. This measures that, with
fast bodies (no proxy, no faults): ``--threads`` threads (default 8) each
making GetObject calls and reading each body to its end, through a pool of
``--concurrency`` slots (default 4, fewer than the threads, so the limit
binds), on two object sizes (4 KiB and 1 MiB).

Variants, all against one moto server (LocalS3) in a process of its own:

- ``bare``: a plain boto3 client (no pool);
- ``pooled``: a client of a session installed with the pool, from this
  checkout (the body holds its slot);
- ``pooled-old`` (with ``--baseline-rev REV``): the same, with the package as
  it was at ``REV`` (``git archive``), where the slot went back when the call
  returned.

Each timed run is a fresh process (so no variant inherits another's
imports, threads or connections), warms up, then times ``--gets`` calls.
Runs alternate their order from round to round. Shown per variant: its best
round (noise only makes runs slower) and its median, and against the
baseline the ratio of the best rounds and the median of the per-round paired
ratios (a round's runs are adjacent, so they share the machine's mood). A
pooled run checks that its pool settled every call and holds no slot
afterwards, so a broken setup cannot report flattering numbers. The target,
judged on the paired median (on these shared machines the best rounds of one
variant swing by 10% from run to run): ``pooled`` keeps at least 0.95 of
``pooled-old``'s GETs per second (of ``bare``'s without a baseline revision).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"4KiB": 4 * 1024, "1MiB": 1024 * 1024}
TARGET = 0.95


# ------------------------------------------------------------------ the server


def serve() -> None:
    """``--serve``: run LocalS3 with one bucket holding the objects; print its details; stop when stdin closes."""
    import boto3

    from s3pool_plugins.testing import LocalS3

    server = LocalS3().start()
    bucket = server.create_bucket("bench-bodies")
    client = boto3.client("s3", **server.client_kwargs())
    for name, size in SIZES.items():
        client.put_object(Bucket=bucket, Key=f"object-{name}", Body=os.urandom(size))
    print(json.dumps({"kwargs": server.client_kwargs(), "bucket": bucket}), flush=True)
    sys.stdin.read()
    server.stop()


# -------------------------------------------------------------- one timed run


def run(variant: str, server: dict[str, Any], size: str, threads: int, concurrency: int, gets: int) -> dict[str, Any]:
    """``--run``: time ``gets`` GetObject calls (body read to its end) from ``threads`` threads."""
    import boto3
    from botocore.config import Config

    kwargs = dict(server["kwargs"])
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=max(threads, concurrency))
    session = boto3.session.Session(
        aws_access_key_id=kwargs.pop("aws_access_key_id"),
        aws_secret_access_key=kwargs.pop("aws_secret_access_key"),
        region_name=kwargs.pop("region_name"),
    )
    pool = None
    if variant != "bare":
        from s3pool_plugins import OperationsPool, install

        pool = OperationsPool(concurrency=concurrency, load_entrypoints=False)
        install(session, pool)
    client = session.client("s3", config=config, **kwargs)
    bucket, key, expected = server["bucket"], f"object-{size}", SIZES[size]

    def get(_: int) -> int:
        return len(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    with ThreadPoolExecutor(threads) as workers:
        assert all(n == expected for n in workers.map(get, range(threads * 3)))  # warm up: connections, imports
        started = time.perf_counter()
        read = sum(workers.map(get, range(gets)))
        seconds = time.perf_counter() - started
    assert read == expected * gets
    if pool is not None:
        stats = pool.stats()
        assert stats.active == 0 and stats.succeeded == threads * 3 + gets, stats
        pool.shutdown()
    return {"variant": variant, "size": size, "seconds": seconds, "gets_per_second": gets / seconds}


# --------------------------------------------------------------- the driver


def old_tree(revision: str) -> Path:
    """The package as it was at ``revision``, extracted to a temporary directory."""
    target = Path(tempfile.mkdtemp(prefix="bench-bodies-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "s3pool_plugins"], check=True, capture_output=True
    ).stdout
    archive_path = target / "tree.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(target, filter="data")
    return target


def timed(variant: str, tree: Path, server: dict[str, Any], size: str, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, __file__, "--run", variant, "--size", size, "--server", json.dumps(server)]
    command += ["--threads", str(args.threads), "--concurrency", str(args.concurrency), "--gets", str(args.gets)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True, cwd=tree).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls (about 30 s)")
    parser.add_argument("--baseline-rev", metavar="REV", help="also run the pool as it was at git revision REV")
    parser.add_argument("--rounds", type=int, help="rounds per variant and size (default 11, quick 2)")
    parser.add_argument("--gets", type=int, help="timed GetObject calls per run (default 400, quick 120)")
    parser.add_argument("--threads", type=int, default=8, help="threads making calls (default 8)")
    parser.add_argument("--concurrency", type=int, default=4, help="the pool's limit (default 4)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for option in ("rounds", "gets", "threads", "concurrency"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option} needs an int >= 1, got {value}")
    if args.serve:
        serve()
        return 0
    if args.run:
        print(json.dumps(run(args.run, json.loads(args.server), args.size, args.threads, args.concurrency, args.gets)))
        return 0

    rounds = args.rounds or (2 if args.quick else 11)
    args.gets = args.gets or (120 if args.quick else 400)
    trees = {"bare": ROOT, "pooled": ROOT}
    if args.baseline_rev:
        trees["pooled-old"] = old_tree(args.baseline_rev)
    baseline = "pooled-old" if args.baseline_rev else "bare"
    server_process = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert server_process.stdout is not None and server_process.stdin is not None
    server = json.loads(server_process.stdout.readline())
    print(
        f"{args.threads} threads, pool of {args.concurrency}, {args.gets} GETs per run, {rounds} rounds; "
        f"baseline: {baseline}" + (f" at {args.baseline_rev}" if args.baseline_rev else "")
    )
    results: dict[str, dict[str, list[float]]] = {size: {v: [] for v in trees} for size in SIZES}
    try:
        for number in range(rounds):
            order = list(trees) if number % 2 == 0 else list(reversed(trees))
            for size in SIZES:
                for variant in order:
                    result = timed(variant, trees[variant], server, size, args)
                    results[size][variant].append(result["gets_per_second"])
    finally:
        server_process.stdin.close()
        server_process.wait(30)

    report: dict[str, Any] = {"settings": vars(args) | {"rounds": rounds}, "sizes": {}}
    met = True
    print(f"{'size':>6}  {'variant':<11} {'best GET/s':>10} {'median':>8}  ratio to {baseline} (best; paired median)")
    for size, by_variant in results.items():
        base = by_variant[baseline]
        entry: dict[str, Any] = {}
        for variant, figures in by_variant.items():
            best, median = max(figures), statistics.median(figures)
            ratio = best / max(base)
            paired = statistics.median(mine / theirs for mine, theirs in zip(figures, base, strict=True))
            entry[variant] = {"best": best, "median": median, "ratio": ratio, "paired_median_ratio": paired}
            print(f"{size:>6}  {variant:<11} {best:>10.1f} {median:>8.1f}  {ratio:.3f}; {paired:.3f}")
        met = met and entry["pooled"]["paired_median_ratio"] >= TARGET
        report["sizes"][size] = entry
    print(f"target: pooled >= {TARGET} x {baseline} (paired median): {'met' if met else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
