"""The demo's workload, run once as plain boto3/s3fs and once under a pool, and measured.

One run: many small uploads from threads with boto3 (every ``hot_every``-th
object to the throttled ``hot/`` prefix) and, at the same time, a pandas
Parquet round trip through s3fs. Everything reported is measured: call
times by the workload's own clock, requests, 503s and requests in flight by
the :class:`~s3pool_plugins.testing.ChaosProxy`, the limit by the pool. A
sampler records the counters about four times a second for the chart.

Needs the ``demo`` extra (boto3, moto, pandas, pyarrow; s3fs is a
dependency of the package).
"""

from __future__ import annotations

import importlib
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

SAMPLE_INTERVAL = 0.25
"""Seconds between two samples of the counters."""

PARQUET_PRIORITY = 10
"""The priority of the Parquet round trip's calls in the pooled run (the uploads have 0)."""


@dataclass(frozen=True)
class Scenario:
    """What the demo runs; every field has a default that suits a 2-core machine (seconds where timed)."""

    objects: int = 1000
    threads: int = 32
    object_size: int = 1024
    hot_every: int = 2
    hot_writes_per_second: float = 40.0
    latency: float = 0.02
    concurrency: int | str = "auto"
    retries: int = 10
    retry_delay: float = 1.0
    max_retry_delay: float = 4.0
    parquet_rows: int = 100_000
    seed: int = 1

    @property
    def hot_burst(self) -> float:
        """The token bucket's size on ``hot/``: a quarter second of writes, as S3 allows little burst."""
        return max(1.0, self.hot_writes_per_second / 4)

    def pool_options(self) -> dict[str, Any]:
        """The options of the pooled run's ``OperationsPool`` (on auto: one adaptive state per key prefix)."""
        options: dict[str, Any] = {
            "concurrency": self.concurrency,
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "max_retry_delay": self.max_retry_delay,
        }
        if self.concurrency == "auto":
            options["auto_tuning"] = {"scope": "prefix", "max_concurrency": self.threads}
        return options


@dataclass(frozen=True)
class Sample:
    """The counters at ``elapsed`` seconds into a run (cumulative counts).

    ``limit`` is the pool's own limit; ``partitions`` the adaptive state of
    each key prefix (``scope="prefix"``), by prefix without the bucket
    (``"hot/"``): its limit and its pacing rate (attempts per second, None
    when unpaced). With a prefix paced, its rate is what holds it back.
    """

    elapsed: float
    stored: int
    failed: int
    requests: int
    throttled: int
    in_flight: int
    limit: int | None
    hot_stored: int = 0
    partitions: Mapping[str, tuple[int, float | None]] = field(default_factory=dict)


@dataclass
class RunResult:
    """What one run measured (seconds for times)."""

    label: str
    pooled: bool
    objects: int
    wall_time: float = 0.0
    upload_time: float = 0.0
    stored: int = 0
    hot_stored: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    call_times: list[float] = field(default_factory=list)
    upload_requests: int = 0
    requests: int = 0
    throttled: int = 0
    in_flight_peak: int = 0
    parquet_time: float | None = None
    parquet_error: str | None = None
    limit: int | None = None
    samples: list[Sample] = field(default_factory=list)

    @property
    def objects_per_second(self) -> float:
        """Objects stored per second of the upload phase."""
        return self.stored / self.upload_time if self.upload_time > 0 else 0.0

    @property
    def hot_writes_per_second(self) -> float:
        """Objects stored under ``hot/`` per second of the upload phase."""
        return self.hot_stored / self.upload_time if self.upload_time > 0 else 0.0

    @property
    def attempts_per_upload(self) -> float:
        """Requests the proxy saw for the uploaded keys, per upload call."""
        return self.upload_requests / self.objects if self.objects else 0.0

    def call_time(self, quantile: float) -> float | None:
        """The exact ``quantile`` (0..1) of the upload call times (nearest rank), or None."""
        if not self.call_times:
            return None
        ordered = sorted(self.call_times)
        rank = math.ceil(quantile * len(ordered) - 1e-9)  # nearest rank, 1-based
        return ordered[min(len(ordered), max(1, rank)) - 1]


class _Tally:
    """Thread-safe counts of the uploads done so far."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stored = 0
        self.hot_stored = 0
        self.failed = 0
        self.errors: Counter[str] = Counter()
        self.call_times: list[float] = []

    def add(self, duration: float, error: BaseException | None, hot: bool) -> None:
        with self.lock:
            self.call_times.append(duration)
            if error is None:
                self.stored += 1
                self.hot_stored += hot
            else:
                self.failed += 1
                self.errors[error_name(error)] += 1


def error_name(error: BaseException) -> str:
    """The S3 error code of a botocore error, else the exception's class name."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(error).__name__


def _body(index: int, size: int) -> bytes:
    text = f'{{"id": {index}, "payload": "'
    return (text + "x" * max(0, size - len(text) - 2) + '"}').encode()


def make_frame(rows: int, seed: int) -> Any:
    """A deterministic DataFrame of ``rows`` rows for the Parquet round trip."""
    np = importlib.import_module("numpy")
    pd = importlib.import_module("pandas")
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype="int64"),
            "group": rng.integers(0, 50, rows, dtype="int64"),
            "value": rng.normal(100.0, 15.0, rows),
            "flag": rng.random(rows) < 0.1,
        }
    )


def run_workload(
    server: Any,
    proxy: Any,
    scenario: Scenario,
    *,
    pooled: bool,
    label: str,
    on_sample: Callable[[RunResult, Sample], None] | None = None,
) -> RunResult:
    """Run the workload once against ``proxy`` (in front of ``server``), plain or pooled; returns what it measured.

    The proxy gets a fresh bucket, the latency and the ``hot/`` limit of
    ``scenario``, a reseeded fault plan and zeroed counters. The bucket stays
    (the server's store ends with the demo).
    """
    import boto3
    from botocore.config import Config

    from ..testing import Latency

    bucket = server.create_bucket()
    proxy.clear_faults()
    proxy.configure(latency=Latency(scenario.latency, sigma=0.3, tail_probability=0.02))
    proxy.limit_prefix(f"{bucket}/hot/", writes_per_second=scenario.hot_writes_per_second, burst=scenario.hot_burst)
    proxy.reseed(scenario.seed)
    proxy.reset_counts()

    result = RunResult(label=label, pooled=pooled, objects=scenario.objects)
    session = boto3.session.Session(
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key, region_name=server.region
    )
    pool = None
    if pooled:
        from .. import OperationsPool, install

        pool = install(
            session,
            OperationsPool(**scenario.pool_options(), seed=scenario.seed, load_entrypoints=False, name="s3pool-demo"),
        )
    # botocore's defaults, spelled out so a retry mode in the user's AWS config cannot change the baseline.
    config = Config(
        max_pool_connections=scenario.threads,
        retries={"mode": "legacy"},
        s3={"addressing_style": "path"},
    )
    client = session.client("s3", endpoint_url=proxy.endpoint_url, config=config)
    frame = make_frame(scenario.parquet_rows, scenario.seed)
    tally = _Tally()
    stop_sampling = threading.Event()
    started = time.perf_counter()

    def sample() -> Sample:
        seen = proxy.stats()
        with tally.lock:
            stored, failed, hot_stored = tally.stored, tally.failed, tally.hot_stored
        partitions = {} if pool is None else pool.partition_limits()
        return Sample(
            elapsed=time.perf_counter() - started,
            stored=stored,
            failed=failed,
            requests=seen.requests,
            throttled=seen.throttled,
            in_flight=seen.in_flight,
            limit=None if pool is None else pool.stats().limit,
            hot_stored=hot_stored,
            partitions={name.removeprefix(f"{bucket}/"): state for name, state in partitions.items()},
        )

    def sampler() -> None:
        while not stop_sampling.wait(SAMPLE_INTERVAL):
            point = sample()
            result.samples.append(point)
            if on_sample is not None:
                on_sample(result, point)

    def upload(index: int) -> None:
        hot = index % scenario.hot_every == 0
        prefix = "hot" if hot else "cold"
        begun = time.perf_counter()
        error: BaseException | None = None
        try:
            client.put_object(Bucket=bucket, Key=f"{prefix}/{index:06d}.json", Body=_body(index, scenario.object_size))
        except Exception as caught:
            error = caught
        tally.add(time.perf_counter() - begun, error, hot)

    def parquet_round_trip() -> None:
        begun = time.perf_counter()
        try:
            filesystem = _filesystem(server, proxy, pool)
            path = f"{bucket}/tables/frame.parquet"
            with filesystem.open(path, "wb") as stream:
                frame.to_parquet(stream, index=False)
            with filesystem.open(path, "rb") as stream:
                back = importlib.import_module("pandas").read_parquet(stream)
            if not back.equals(frame):
                raise AssertionError("the frame read back differs from the frame written")
            result.parquet_time = time.perf_counter() - begun
        except Exception as error:
            result.parquet_error = f"{type(error).__name__}: {error}"[:200]

    sampling = threading.Thread(target=sampler, name="s3pool-demo-sampler", daemon=True)
    parquet = threading.Thread(target=parquet_round_trip, name="s3pool-demo-parquet", daemon=True)
    result.samples.append(sample())
    sampling.start()
    parquet.start()
    with ThreadPoolExecutor(scenario.threads, thread_name_prefix="s3pool-demo-upload") as workers:
        list(workers.map(upload, range(scenario.objects)))
    result.upload_time = time.perf_counter() - started
    parquet.join()
    result.wall_time = time.perf_counter() - started
    stop_sampling.set()
    sampling.join()
    proxy.wait_idle(timeout=5)
    final = sample()
    result.samples.append(final)

    seen = proxy.stats()
    result.stored, result.hot_stored, result.failed = tally.stored, tally.hot_stored, tally.failed
    result.errors, result.call_times = tally.errors, tally.call_times
    result.requests, result.throttled, result.in_flight_peak = seen.requests, seen.throttled, seen.in_flight_peak
    result.upload_requests = sum(
        n
        for (method, resource), n in seen.attempts.items()
        if method == "PUT" and resource.startswith((f"{bucket}/hot/", f"{bucket}/cold/"))
    )
    if pool is not None:
        result.limit = pool.stats().limit
        pool.shutdown(wait=True)
    client.close()
    proxy.clear_faults()
    return result


def _filesystem(server: Any, proxy: Any, pool: Any) -> Any:
    """s3fs for the Parquet round trip: plain, or on an aiobotocore session with ``pool`` installed."""
    import s3fs

    options = server.storage_options(proxy.endpoint_url)
    if pool is None:
        return s3fs.S3FileSystem(skip_instance_cache=True, **options)
    from aiobotocore.session import AioSession

    from .. import install

    session = AioSession()
    operations = [
        "PutObject",
        "GetObject",
        "HeadObject",
        "ListObjectsV2",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    install(session, pool, priorities=dict.fromkeys(operations, PARQUET_PRIORITY))
    filesystem = s3fs.S3FileSystem(session=session, skip_instance_cache=True, **options)
    filesystem.retries = 1  # the pool owns retries (see docs/fsspec.md)
    return filesystem
