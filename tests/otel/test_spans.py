"""One span per pool task, with the AWS SDK conventions for S3 calls, retry events and metric instruments."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from opentelemetry.trace import SpanKind, StatusCode

from s3pool_plugins import hookimpl, install
from s3pool_plugins.testing import Action

PATH_STYLE = Config(s3={"addressing_style": "path"})


def _client(local_s3, pool, endpoint_url=None):
    session = boto3.session.Session(
        aws_access_key_id=local_s3.access_key, aws_secret_access_key=local_s3.secret_key, region_name=local_s3.region
    )
    install(session, pool)
    return session.client("s3", endpoint_url=endpoint_url or local_s3.endpoint_url, config=PATH_STYLE)


def test_an_s3_call_span_follows_the_aws_sdk_conventions(make_pool, telemetry, local_s3, s3_bucket) -> None:
    pool = make_pool(concurrency=3, plugins=[telemetry.plugin()], priority=2)
    s3 = _client(local_s3, pool)
    with telemetry.tracer.start_as_current_span("job") as job:
        s3.put_object(Bucket=s3_bucket, Key="data/one.csv", Body=b"a,b\n")
    (span,) = telemetry.finished("S3.PutObject")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == job.get_span_context().span_id
    attributes = dict(span.attributes)
    assert attributes["rpc.system"] == "aws-api" and attributes["rpc.service"] == "S3"
    assert attributes["rpc.method"] == "PutObject"
    assert attributes["aws.s3.bucket"] == s3_bucket and attributes["aws.s3.key"] == "data/one.csv"
    assert attributes["aws.request_id"] and attributes["http.response.status_code"] == 200
    assert attributes["cloud.region"] == "us-east-1" and attributes["server.address"] == "127.0.0.1"
    assert attributes["s3pool.priority"] == 2 and attributes["s3pool.attempts"] == 1
    assert attributes["s3pool.queue_wait"] >= 0 and attributes["s3pool.limit_at_start"] == 3
    assert span.status.status_code is StatusCode.UNSET


def test_retries_are_span_events_and_final_failure_is_an_error(make_pool, telemetry, local_s3, chaos_proxy, s3_bucket):
    pool = make_pool(retries=2, retry_delay=0.001, plugins=[telemetry.plugin()])
    s3 = _client(local_s3, pool, chaos_proxy.endpoint_url)
    chaos_proxy.inject(Action.THROTTLE, 2)
    s3.put_object(Bucket=s3_bucket, Key="hot", Body=b"x")
    (span,) = telemetry.finished("S3.PutObject")
    events = [event for event in span.events if event.name == "s3pool.retry"]
    assert [event.attributes["error.type"] for event in events] == ["SlowDown", "SlowDown"]
    assert [event.attributes["s3pool.attempt"] for event in events] == [1, 2]
    assert all(event.attributes["s3pool.retry.throttling"] for event in events)
    assert dict(span.attributes)["s3pool.attempts"] == 3
    chaos_proxy.configure(throttle_rate=1.0)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=s3_bucket, Key="hot")
    (failed,) = telemetry.finished("S3.HeadObject")
    assert failed.status.status_code is StatusCode.ERROR
    assert any(event.name == "exception" for event in failed.events)
    assert dict(failed.attributes)["http.response.status_code"] == 503


def test_task_spans_parent_the_calls_made_inside(make_pool, telemetry, local_s3, s3_bucket) -> None:
    pool = make_pool(concurrency=1, plugins=[telemetry.plugin()])
    s3 = _client(local_s3, pool)

    def copy() -> None:
        s3.put_object(Bucket=s3_bucket, Key="a", Body=b"1")

    with telemetry.tracer.start_as_current_span("job") as job:
        pool.options(name="copy", metadata={"tenant": "team-a"}).submit(copy).result(timeout=10)
    (task,) = telemetry.finished("copy")
    (call,) = telemetry.finished("S3.PutObject")
    assert task.parent.span_id == job.get_span_context().span_id  # the caller's context reached the worker
    assert call.parent.span_id == task.context.span_id
    assert dict(task.attributes)["s3pool.tenant"] == "team-a"


async def test_async_tasks_and_admissions_get_spans(make_pool, telemetry) -> None:
    pool = make_pool(plugins=[telemetry.plugin()])

    async def work() -> int:
        return 1

    with telemetry.tracer.start_as_current_span("job") as job:
        async with pool.admit_async(name="fsspec-like operation"):
            assert await pool.enqueue_async(work, name="nested run") == 1
    (admission,) = telemetry.finished("fsspec-like operation")
    (nested,) = telemetry.finished("nested run")
    assert admission.parent.span_id == job.get_span_context().span_id
    assert nested.parent.span_id == admission.context.span_id


def test_keys_can_be_kept_off_and_attributes_redacted(make_pool, telemetry, local_s3, s3_bucket) -> None:
    class Redact:
        @hookimpl
        def s3pool_span_attributes(self, pool, task, attributes) -> None:
            attributes.pop("aws.s3.bucket", None)
            attributes["team"] = "storage"

    pool = make_pool(plugins=[telemetry.plugin(record_keys=False), Redact()])
    _client(local_s3, pool).put_object(Bucket=s3_bucket, Key="secret/customer-42.csv", Body=b"x")
    (span,) = telemetry.finished("S3.PutObject")
    assert "aws.s3.key" not in span.attributes and "aws.s3.bucket" not in span.attributes
    assert span.attributes["team"] == "storage"


def test_metric_instruments_have_bounded_attributes(make_pool, telemetry, local_s3, chaos_proxy, s3_bucket) -> None:
    pool = make_pool(retries=1, retry_delay=0.001, plugins=[telemetry.plugin()], name="metrics-pool")
    s3 = _client(local_s3, pool, chaos_proxy.endpoint_url)
    chaos_proxy.inject(Action.THROTTLE, 1)
    for i in range(3):
        s3.put_object(Bucket=s3_bucket, Key=f"k{i}", Body=b"x")
    with pytest.raises(ClientError):
        s3.get_object(Bucket=s3_bucket, Key="missing")
    points = telemetry.metric_points()
    assert sum(p.count for p in points["s3pool.task.duration"]) == 4
    assert sum(p.value for p in points["s3pool.task.retries"]) == 1
    assert sum(p.value for p in points["s3pool.task.throttles"]) == 1
    assert sum(p.value for p in points["s3pool.task.failures"]) == 1
    assert {p.attributes["s3pool.pool"] for p in points["s3pool.limit"]} >= {"metrics-pool"}
    allowed = {"s3pool.pool", "s3pool.task.kind", "rpc.method", "s3pool.outcome"}
    for name, data_points in points.items():
        for point in data_points:
            assert set(point.attributes) <= allowed, (name, point.attributes)


def test_without_an_sdk_the_plugin_is_not_even_registered(monkeypatch) -> None:
    from s3pool_plugins import OperationsPool
    from s3pool_plugins.adapters.otel import OpenTelemetryPlugin, enable, plugin
    from s3pool_plugins.hooks import manager

    monkeypatch.delenv("S3POOL_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    assert ("opentelemetry", plugin) in manager.entrypoint_plugins()  # the package's own entry point
    assert plugin.s3pool_wanted() is False  # no SDK configured in this process: the API's proxies
    assert OpenTelemetryPlugin(tracer_provider=object()).s3pool_wanted() is True
    pool = OperationsPool()  # autoloading on
    try:
        assert not pool.plugin_manager.is_registered(plugin)
        assert "s3pool_task_queued" not in pool.plugin_manager.implemented  # no hook to call per task
        assert enable(pool) is plugin and pool.plugin_manager.is_registered(plugin)
        assert enable(pool) is plugin  # twice is harmless
    finally:
        pool.shutdown()


def test_fsspec_operation_spans_parent_their_api_call_spans(make_pool, telemetry, local_s3, s3_bucket) -> None:
    import fsspec

    pool = make_pool(concurrency=2, plugins=[telemetry.plugin()])
    options = {"pool": {"pool": pool}, "s3": local_s3.storage_options()}
    with telemetry.tracer.start_as_current_span("job") as job:  # the caller's context crosses fsspec's IO thread
        fs, path = fsspec.core.url_to_fs(f"pool::s3://{s3_bucket}/traced.txt", **options)
        fs.pipe_file(path, b"traced")
        assert fs.cat_file(path) == b"traced"
        with fsspec.open(f"pool::s3://{s3_bucket}/traced.txt", "rb", **options) as handle:
            assert handle.read(3) == b"tra"  # a range read
    spans = telemetry.finished()
    by_id = {span.context.span_id: span for span in spans}
    calls = [span for span in spans if span.name.startswith("S3.")]
    operations = [span for span in spans if span.name.startswith("fsspec.")]
    assert all(span.kind is SpanKind.INTERNAL for span in operations)
    assert calls and operations
    for call in calls:  # every API call has an operation span as parent, and that one the job
        parent = by_id[call.parent.span_id]
        assert parent in operations, (call.name, parent.name)
        assert parent.parent.span_id == job.get_span_context().span_id


def test_transfer_keeps_the_callers_context_in_s3transfer_threads(make_pool, telemetry, local_s3, s3_bucket, tmp_path):
    import os

    from boto3.s3.transfer import TransferConfig

    from s3pool_plugins import priority_scope
    from s3pool_plugins.adapters.botocore import transfer

    pool = make_pool(concurrency=4, plugins=[telemetry.plugin()])
    s3 = _client(local_s3, pool)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(11 * 1024 * 1024))
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    with telemetry.tracer.start_as_current_span("upload job") as job, priority_scope(42):
        transfer(s3, config).upload_file(str(source), s3_bucket, "big.bin")
    parts = telemetry.finished("S3.UploadPart")
    assert len(parts) == 3
    calls = [span for span in telemetry.finished() if span.name.startswith("S3.")]
    assert {span.parent.span_id for span in calls} == {job.get_span_context().span_id}
    assert {span.attributes["s3pool.priority"] for span in calls} == {42}


def test_a_call_that_succeeds_after_retries_is_not_an_error(make_pool, telemetry, local_s3, chaos_proxy, s3_bucket):
    pool = make_pool(retries=3, retry_delay=0.001, plugins=[telemetry.plugin()])
    s3 = _client(local_s3, pool, chaos_proxy.endpoint_url)
    chaos_proxy.inject(Action.INTERNAL_ERROR, 2)
    s3.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    (span,) = telemetry.finished("S3.PutObject")
    assert span.status.status_code is StatusCode.UNSET
    assert [event.name for event in span.events] == ["s3pool.retry", "s3pool.retry"]
    chaos_proxy.configure(error_rate=1.0)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=s3_bucket, Key="k")
    (failed,) = telemetry.finished("S3.HeadObject")
    assert [event.name for event in failed.events].count("exception") == 1


def test_gauges_of_pools_that_share_a_name_are_summed(make_pool, telemetry) -> None:
    """Two pools with one name (the default name is "s3pool") report one point each gauge, their sum:
    two points with the same attributes would leave only one of them in the export."""
    plugin = telemetry.plugin()
    for limit in (3, 7):
        pool = make_pool(concurrency=limit, name="shared", plugins=[plugin])
        pool.submit(lambda: None).result(5)  # a pool is watched from its first task on
    points = telemetry.metric_points()
    limits = [p.value for p in points["s3pool.limit"] if p.attributes["s3pool.pool"] == "shared"]
    assert limits == [10]


def test_without_keys_a_failed_tasks_exception_event_keeps_its_type_only(make_pool, telemetry) -> None:
    """An error's message or traceback can name the object: with record_keys=False the span's
    exception event says what failed, not where."""

    def missing() -> None:
        raise FileNotFoundError("bench-bucket/secret/customer-42.csv")

    for record_keys in (True, False):
        pool = make_pool(retries=0, plugins=[telemetry.plugin(record_keys=record_keys)], name=f"keys-{record_keys}")
        with pytest.raises(FileNotFoundError):
            pool.submit(missing).result(5)
        pool.drain(timeout=5)
    spans = {span.attributes["s3pool.pool"]: span for span in telemetry.finished()}
    events = {name: [dict(event.attributes) for event in span.events] for name, span in spans.items()}
    assert "customer-42" in repr(events["keys-True"])  # the default keeps the standard exception event
    assert events["keys-False"] == [{"exception.type": "FileNotFoundError"}]


def test_an_expected_not_found_span_has_no_error_status(make_pool, telemetry, local_s3, s3_bucket) -> None:
    from opentelemetry.trace import StatusCode

    from s3pool_plugins.adapters.fsspec import PooledFileSystem

    pool = make_pool(plugins=[telemetry.plugin()])
    fs = PooledFileSystem(target_protocol="s3", target_options=local_s3.storage_options(), pool=pool)
    assert not fs.exists(f"{s3_bucket}/missing")  # its HEAD answers 404: the answer, not a failure
    heads = telemetry.finished("S3.HeadObject")
    assert heads and all(span.status.status_code is not StatusCode.ERROR for span in heads)
    assert all(span.attributes.get("s3pool.expected") is True for span in heads)
    assert [event.name for event in heads[0].events] == ["s3pool.expected"]
    points = telemetry.metric_points()
    assert not points.get("s3pool.task.failures")  # the probe is no failure on dashboards either
    outcomes = {point.attributes.get("s3pool.outcome") for point in points["s3pool.task.duration"]}
    assert "expected" in outcomes and "failed" not in outcomes
