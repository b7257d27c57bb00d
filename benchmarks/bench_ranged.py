"""Benchmark: reading one large object through the fsspec layer's parallel ranged reads and through plain s3fs.

Run from the repository root::

    python benchmarks/bench_ranged.py            # 256 MiB object, 2 rounds (about 11 minutes)
    python benchmarks/bench_ranged.py --quick    # 32 MiB object, 1 round
    python benchmarks/bench_ranged.py --json out.json --strict

Setup: a local S3 (moto, ``LocalS3``) and a ``ChaosProxy`` in front of it
whose ``bandwidth_per_connection`` caps every connection (default 1 MiB/s:
the client, the proxy and moto share two cores here, and the pooled reads'
total must stay below what they can move),
both in a *separate process*, so that the server's CPU time does not
compete with the client's for the GIL. moto is told to keep the object in
memory (``MOTO_S3_DEFAULT_KEY_BUFFER_SIZE``): above that size it reads the
whole object from a temporary file for every GET, a range too, a cost per
request that S3 does not have and that would fall on the ranged reads
(32 requests) far more than on s3fs's (7). One object of ``--size`` MiB of
random bytes is uploaded once (directly, not through the proxy), and a
small one (64 KiB) beside it.

Variants, measured in the same run and checked byte for byte (a digest)
after the clock stops:

- ``s3fs``: plain s3fs at its defaults, ``cat_file`` and ``get_file`` to a
  local file. Since s3fs 2026.x (fsspec/s3fs#1007) that is **not one
  stream**: with ``max_concurrency=10`` (its default) a read larger than
  ``default_block_size`` (50 MiB) is a ``HEAD``, then 50 MiB ranges in
  batches of 10, each batch held in memory, with no ETag pinned;
- ``s3fs one stream`` (informational, ``get_file`` in the first round
  only, it is slow): ``max_concurrency=1``, s3fs before that release and
  what its maintainers advise where the bandwidth is unknown;
- ``pool::``: the same calls on a ``pool::`` filesystem (``PooledFileSystem``
  over s3fs) with ranged reads at their defaults (8 MiB parts, 16 at once);
- ``install_fsspec``: ``fsspec.filesystem("s3")`` after ``install_fsspec(pool)``.

The pool is ``OperationsPool(concurrency=16, load_entrypoints=False)``.

Large reads: the target is each pooled variant's best time at most a third
of plain s3fs's (>= 3x faster); the speed-up over one stream is shown too. Memory: ``tracemalloc``'s peak during each read
(Python allocations, so the bytes read are counted, sockets' buffers are
not): ``get_file`` must stay under the documented bound of the layer,
``max_parts`` (16) chunks of 1 MiB plus 4 MiB of slack; ``cat_file`` holds the
result, and briefly a copy of it, as s3fs does. Small objects: 200
sequential ``cat_file`` of the 64 KiB object per round, uncapped (a
separate proxy without the cap), best of the rounds: the pooled time within
1.05x of s3fs's. Rounds alternate the order of the variants. This is a
benchmark script, not a test: it never fails on a missed target
(``--strict`` makes it exit 1 in that case).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
SPEEDUP_TARGET = 3.0
SMALL_TARGET = 1.05
SMALL_SIZE = 64 * 1024
CONCURRENCY = 16


def _import_package() -> Any:
    """Import s3pool_plugins, from the installed package or from this checkout."""
    try:
        return importlib.import_module("s3pool_plugins")
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        return importlib.import_module("s3pool_plugins")


def serve(size: int, bandwidth: float) -> None:
    """The server process: LocalS3, a capped proxy and an uncapped one; prints where, then waits for ``quit``."""
    # moto keeps an object above this size in a temporary file and reads all of it for every GET, a range
    # too: 32 ranges of a 256 MiB object would cost the server 8 GiB of reads that S3 does not make.
    os.environ["MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"] = str(size + MIB)
    _import_package()
    from boto3.s3.transfer import TransferConfig

    from s3pool_plugins.testing import ChaosProxy, LocalS3

    with LocalS3() as server, ChaosProxy(server.endpoint_url) as capped, ChaosProxy(server.endpoint_url) as clean:
        capped.configure(bandwidth_per_connection=bandwidth)
        bucket = server.create_bucket("ranged-bench")
        data = os.urandom(size)
        client = server.client()
        client.upload_fileobj(io.BytesIO(data), bucket, "large", Config=TransferConfig(multipart_chunksize=8 * MIB))
        small = os.urandom(SMALL_SIZE)
        client.put_object(Bucket=bucket, Key="small", Body=small)
        print(
            json.dumps(
                {
                    "capped": capped.endpoint_url,
                    "clean": clean.endpoint_url,
                    "storage_options": server.storage_options(),
                    "bucket": bucket,
                    "large_sha256": hashlib.sha256(data).hexdigest(),
                    "small_sha256": hashlib.sha256(small).hexdigest(),
                }
            ),
            flush=True,
        )
        del data
        for line in sys.stdin:
            if line.strip() == "quit":
                break


class Server:
    """The client's handle on the server process."""

    def __init__(self, size: int, bandwidth: float) -> None:
        command = [sys.executable, __file__, "--serve", str(size), str(bandwidth)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.info: dict[str, Any] = json.loads(self.process.stdout.readline())

    def options(self, endpoint: str) -> dict[str, Any]:
        options: dict[str, Any] = json.loads(json.dumps(self.info["storage_options"]))
        options["client_kwargs"]["endpoint_url"] = self.info[endpoint]
        options["skip_instance_cache"] = True
        return options

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(60)


def filesystems(server: Server, endpoint: str, pool: Any) -> dict[str, Callable[[], Any]]:
    """A fresh filesystem of each variant, made by a call (so install_fsspec is active only while it is made)."""
    import fsspec

    from s3pool_plugins import install_fsspec, uninstall_fsspec
    from s3pool_plugins.adapters.fsspec import PooledFileSystem

    def plain() -> Any:
        return fsspec.filesystem("s3", **server.options(endpoint))

    def one_stream() -> Any:
        return fsspec.filesystem("s3", max_concurrency=1, **server.options(endpoint))

    def pool_url() -> Any:
        return PooledFileSystem(target_protocol="s3", target_options=server.options(endpoint), pool=pool)

    def installed() -> Any:
        install_fsspec(pool)
        try:
            return fsspec.filesystem("s3", **server.options(endpoint))
        finally:
            uninstall_fsspec()

    return {"s3fs": plain, "s3fs one stream": one_stream, "pool::": pool_url, "install_fsspec": installed}


def timed(read: Callable[[], bytes | None]) -> tuple[float, int, bytes | None]:
    """Seconds, tracemalloc's peak in bytes, and what ``read`` returned."""
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        value = read()
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return elapsed, peak, value


def run_large(server: Server, pool: Any, rounds: int, folder: str) -> dict[str, dict[str, Any]]:
    bucket, expected = server.info["bucket"], server.info["large_sha256"]
    makers = filesystems(server, "capped", pool)
    results: dict[str, dict[str, Any]] = {}
    for index in range(rounds):
        order = list(makers.items()) if index % 2 == 0 else list(reversed(makers.items()))
        for name, make in order:
            if name == "s3fs one stream" and index > 0:
                continue
            fs = make()
            for operation in ("cat_file", "get_file"):
                if name == "s3fs one stream" and operation == "cat_file":
                    continue
                local = os.path.join(folder, f"{name}.bin")

                def read(fs: Any = fs, operation: str = operation, local: str = local) -> bytes | None:
                    if operation == "cat_file":
                        data: bytes = fs.cat_file(f"{bucket}/large")
                        return data
                    fs.get_file(f"{bucket}/large", local)
                    return None

                seconds, peak, value = timed(read)
                data = value if value is not None else Path(local).read_bytes()
                if hashlib.sha256(data).hexdigest() != expected:
                    raise RuntimeError(f"{name} {operation}: the bytes read differ from the object's")
                del data, value
                if os.path.exists(local):
                    os.remove(local)
                entry = results.setdefault(f"{name} {operation}", {"seconds": [], "peak_mib": []})
                entry["seconds"].append(seconds)
                entry["peak_mib"].append(peak / MIB)
                print(f"    round {index + 1}: {name:<15} {operation:<9} {seconds:7.2f} s  peak {peak / MIB:7.1f} MiB")
            stats = pool.stats()
            if stats.active or stats.queued:
                raise RuntimeError(f"{name}: the pool did not settle: {stats}")
    return results


def run_small(server: Server, pool: Any, rounds: int, reads: int) -> dict[str, dict[str, Any]]:
    bucket, expected = server.info["bucket"], server.info["small_sha256"]
    makers = filesystems(server, "clean", pool)
    del makers["s3fs one stream"]  # the same request as s3fs's for a small object
    results: dict[str, dict[str, Any]] = {}
    for index in range(rounds):
        order = list(makers.items()) if index % 2 == 0 else list(reversed(makers.items()))
        for name, make in order:
            fs = make()
            fs.cat_file(f"{bucket}/small")  # connection and client made outside the clock
            gc.collect()
            start = time.perf_counter()
            for _ in range(reads):
                data = fs.cat_file(f"{bucket}/small")
            seconds = time.perf_counter() - start
            if hashlib.sha256(data).hexdigest() != expected:
                raise RuntimeError(f"{name}: the small object read back differs")
            results.setdefault(f"{name} cat_file small", {"seconds": []})["seconds"].append(seconds)
    return results


def summarize(results: dict[str, dict[str, Any]]) -> None:
    for entry in results.values():
        entry["best_s"] = min(entry["seconds"])
        entry["median_s"] = statistics.median(entry["seconds"])
        if "peak_mib" in entry:
            entry["peak_mib_max"] = max(entry["peak_mib"])


def judge(large: dict[str, dict[str, Any]], small: dict[str, dict[str, Any]], max_parts: int) -> list[str]:
    """The verdict lines; records ``target_met`` in each judged entry."""
    lines, bound_mib = [], max_parts * 1 + 4
    for operation in ("cat_file", "get_file"):
        base = large[f"s3fs {operation}"]["best_s"]
        for name in ("pool::", "install_fsspec"):
            entry = large[f"{name} {operation}"]
            entry["speedup"] = base / entry["best_s"]
            met = entry["speedup"] >= SPEEDUP_TARGET
            if operation == "get_file":
                entry["memory_bound_mib"] = bound_mib
                met = met and entry["peak_mib_max"] <= bound_mib
            entry["target_met"] = met
            memory = f", peak {entry['peak_mib_max']:.1f} MiB" + (
                f" (bound {bound_mib} MiB)" if operation == "get_file" else ""
            )
            lines.append(
                f"  {name:<15} {operation:<9} {entry['speedup']:5.2f}x s3fs{memory}  "
                f"{'MET' if met else 'MISSED'} (>= {SPEEDUP_TARGET}x)"
            )
            one = large.get(f"s3fs one stream {operation}")
            if one is not None:
                entry["speedup_one_stream"] = one["best_s"] / entry["best_s"]
                lines.append(f"  {'':<15} {'':<9} {entry['speedup_one_stream']:5.2f}x s3fs one stream (informational)")
    base = small["s3fs cat_file small"]["best_s"]
    for name in ("pool::", "install_fsspec"):
        entry = small[f"{name} cat_file small"]
        entry["ratio"] = entry["best_s"] / base
        entry["target_met"] = entry["ratio"] <= SMALL_TARGET
        lines.append(
            f"  {name:<15} small     {entry['ratio']:5.2f}x s3fs's time  "
            f"{'MET' if entry['target_met'] else 'MISSED'} (<= {SMALL_TARGET}x)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), float(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 32 MiB object and one round")
    parser.add_argument("--size", type=int, help="the large object in MiB (default 256, quick 32)")
    parser.add_argument("--bandwidth", type=float, default=1.0, help="MiB/s per connection (default 1)")
    parser.add_argument("--rounds", type=int, help="rounds (default 2, quick 1)")
    parser.add_argument("--small-reads", type=int, default=200, help="small reads per round (default 200)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    for option in ("size", "bandwidth", "rounds", "small_reads"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            parser.error(f"--{option.replace('_', '-')} must be > 0, got {value}")
    size = (args.size or (32 if args.quick else 256)) * MIB
    rounds = args.rounds or (1 if args.quick else 2)

    package = _import_package()
    from s3pool_plugins.adapters.fsspec.ranges import DEFAULT_MAX_PARTS

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    environment = importlib.import_module("bench_core").environment()
    print(f"environment: {environment}")
    print(f"large object {size // MIB} MiB, {args.bandwidth} MiB/s per connection, {rounds} round(s)")
    server = Server(size, args.bandwidth * MIB)
    pool = package.OperationsPool(concurrency=CONCURRENCY, load_entrypoints=False)
    try:
        with tempfile.TemporaryDirectory() as folder:
            large = run_large(server, pool, rounds, folder)
        small = run_small(server, pool, max(rounds, 3), args.small_reads)
    finally:
        pool.shutdown(wait=True)
        server.close()
    summarize(large)
    summarize(small)
    lines = judge(large, small, DEFAULT_MAX_PARTS)
    print("\nlarge reads (best of rounds) and small reads:")
    for name, entry in {**large, **small}.items():
        peak = f"  peak {entry['peak_mib_max']:7.1f} MiB" if "peak_mib_max" in entry else ""
        print(f"  {name:<30} best {entry['best_s']:7.3f} s  median {entry['median_s']:7.3f} s{peak}")
    print("\ntargets:")
    print("\n".join(lines))
    met = all(entry.get("target_met", True) for entry in {**large, **small}.values())
    if args.json:
        report = {
            "environment": environment,
            "size_mib": size // MIB,
            "bandwidth_mib_per_s": args.bandwidth,
            "rounds": rounds,
            "large": large,
            "small": small,
            "all_targets_met": met,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
