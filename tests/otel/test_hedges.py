"""Hedged reads show in spans (``s3pool.hedges``, ``s3pool.hedge_won``) and in the metrics bridge."""

from __future__ import annotations

import time

import boto3
from botocore.config import Config

from s3pool_plugins.adapters.botocore import install
from s3pool_plugins.testing.faults import Action


def _sum(points, name):
    return sum(point.value for point in points.get(name, ()))


def test_a_won_hedge_shows_in_its_span_and_in_the_metrics(make_pool, telemetry, local_s3, s3_bucket, chaos_proxy):
    pool = make_pool(concurrency=4, hedge={"delay": 0.2}, plugins=[telemetry.plugin()])
    client = boto3.client(
        "s3", **local_s3.client_kwargs(chaos_proxy.endpoint_url), config=Config(retries={"mode": "standard"})
    )
    install(client, pool)
    client.put_object(Bucket=s3_bucket, Key="k", Body=b"x" * 1000)
    for _ in range(60):
        client.get_object(Bucket=s3_bucket, Key="k")["Body"].read()
    telemetry.spans.clear()
    chaos_proxy.inject(Action.FORWARD, 1, latency=3.0)
    assert client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"x" * 1000
    spans = [span for span in telemetry.finished() if span.attributes.get("rpc.method") == "GetObject"]
    assert spans and spans[-1].attributes["s3pool.hedges"] == 1
    assert spans[-1].attributes["s3pool.hedge_won"] is True
    deadline = time.monotonic() + 10
    while pool.stats().active and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = pool.stats()
    points = telemetry.metric_points()
    assert _sum(points, "s3pool.hedges") == stats.hedges >= 1
    assert _sum(points, "s3pool.hedges.won") == stats.hedges_won >= 1
    assert _sum(points, "s3pool.hedges.time_saved") == stats.hedge_time_saved > 0
    metrics = pool.metrics()
    assert (metrics.hedges, metrics.hedges_won, metrics.hedge_time_saved) == (
        stats.hedges,
        stats.hedges_won,
        stats.hedge_time_saved,
    )
