"""install()/uninstall() on every supported target, and who owns retries afterwards."""

from __future__ import annotations

import warnings

import boto3
import botocore.session
import pytest
from aiobotocore.session import AioSession
from botocore.config import Config
from botocore.exceptions import ClientError

from s3pool_plugins import hookimpl, install, installed_pool, priority_scope, uninstall
from s3pool_plugins.adapters.botocore import ConnectionPoolTooSmall, RetriesOverridden
from s3pool_plugins.adapters.botocore.mixins import PooledClientMixin
from s3pool_plugins.testing import Action


class TaskLog:
    def __init__(self) -> None:
        self.done: list[tuple[str, float, int, str]] = []

    @hookimpl
    def s3pool_task_completed(self, pool, task, result) -> None:
        self.done.append((task.name, task.priority, task.attempt, "ok"))

    @hookimpl
    def s3pool_task_error(self, pool, task, error) -> None:
        self.done.append((task.name, task.priority, task.attempt, type(error).__name__))


def test_session_install_pools_every_client_made_afterwards(
    make_pool, boto3_session, s3_client_for, local_s3, s3_bucket
):
    log = TaskLog()
    pool = make_pool(concurrency=3, plugins=[log])
    assert install(boto3_session, pool) is pool
    assert install(boto3_session, pool) is pool  # twice is harmless
    client = s3_client_for(boto3_session, local_s3.endpoint_url)
    assert isinstance(client, PooledClientMixin)
    assert installed_pool(client) is pool and installed_pool(boto3_session) is pool
    client.put_object(Bucket=s3_bucket, Key="a", Body=b"1")
    assert client.get_object(Bucket=s3_bucket, Key="a")["Body"].read() == b"1"
    assert [name for name, *_ in log.done] == ["S3.PutObject", "S3.GetObject"]
    stats = pool.stats()
    assert (stats.succeeded, stats.active, stats.pending) == (2, 0, 0)


def test_botocore_and_aiobotocore_sessions_are_accepted(make_pool) -> None:
    pool = make_pool()
    for session in (botocore.session.get_session(), AioSession()):
        assert install(session, pool) is pool
        assert installed_pool(session) is pool
        assert uninstall(session) is True
        assert uninstall(session) is False


def test_unsupported_targets_are_refused_with_the_accepted_types(make_pool, boto3_session) -> None:
    pool = make_pool()
    with pytest.raises(TypeError, match=r"boto3\.Session.*AioSession.*S3 client"):
        install(object(), pool)
    with pytest.raises(TypeError, match="OperationsPool"):
        install(boto3_session, pool="not a pool")
    sqs = boto3_session.client("sqs", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match="S3 clients only"):
        install(sqs, pool)


def test_other_services_are_left_alone(make_pool, boto3_session) -> None:
    install(boto3_session, make_pool())
    assert not isinstance(boto3_session.client("sqs", endpoint_url="http://127.0.0.1:9"), PooledClientMixin)


def test_a_disabled_pool_installs_nothing(make_pool, boto3_session, s3_client_for, local_s3) -> None:
    pool = make_pool(enabled=False)
    install(boto3_session, pool)
    assert installed_pool(boto3_session) is None
    assert not isinstance(s3_client_for(boto3_session, local_s3.endpoint_url), PooledClientMixin)


def test_the_pool_owns_retries_and_botocore_does_not_compound_them(
    make_pool, boto3_session, s3_client_for, chaos_proxy, s3_bucket
) -> None:
    pool = make_pool(retries=2, retry_delay=0.001)
    install(boto3_session, pool)
    # botocore alone would make 11 attempts with this config; the pool's chosen retries allow 3, and say so.
    client = s3_client_for(boto3_session, chaos_proxy.endpoint_url, retries={"max_attempts": 10, "mode": "standard"})
    chaos_proxy.inject(Action.THROTTLE, 50)
    with pytest.raises(ClientError) as caught, pytest.warns(RetriesOverridden, match="configured for 10 retries"):
        client.put_object(Bucket=s3_bucket, Key="hot/x", Body=b"x")
    error = caught.value
    assert error.response["Error"]["Code"] == "SlowDown"
    assert "reached max retries: 2" in str(error)
    assert any("gave up after 3 attempts" in note for note in error.__notes__)
    assert chaos_proxy.stats().attempts_for(f"{s3_bucket}/hot/x", "PUT") == 3
    assert pool.stats().retries == 2 and pool.stats().throttled == 3


def test_existing_clients_can_be_installed_and_uninstalled(
    make_pool, boto3_session, s3_client_for, chaos_proxy, s3_bucket
):
    client = s3_client_for(boto3_session, chaos_proxy.endpoint_url, retries={"max_attempts": 4, "mode": "standard"})
    pool = make_pool(retries=1, retry_delay=0.001)
    with pytest.warns(RetriesOverridden, match="configured for 4 retries"):
        install(client, pool)
    assert install(client, pool) is pool
    chaos_proxy.inject(Action.INTERNAL_ERROR, 100)
    with pytest.raises(ClientError):
        client.head_object(Bucket=s3_bucket, Key="k")
    assert chaos_proxy.stats().requests == 2  # the pool's 1 + 1 retry, not botocore's 1 + 4
    assert uninstall(client) is True
    chaos_proxy.clear_faults()
    chaos_proxy.reset_counts()
    chaos_proxy.inject(Action.INTERNAL_ERROR, 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ClientError):
            client.head_object(Bucket=s3_bucket, Key="k")
    assert chaos_proxy.stats().requests == 5  # botocore's own retries are back (max_attempts=4 means 4 retries)
    assert pool.stats().pending == 0


def test_legacy_retries_come_back_after_uninstall(make_pool, local_s3, chaos_proxy, s3_bucket) -> None:
    client = local_s3.client(
        endpoint_url=chaos_proxy.endpoint_url, config=Config(retries={"mode": "legacy", "max_attempts": 2})
    )
    with pytest.warns(RetriesOverridden):
        install(client, make_pool(retries=0))
    uninstall(client)
    chaos_proxy.inject(Action.INTERNAL_ERROR, 100)
    with pytest.raises(ClientError):
        client.head_object(Bucket=s3_bucket, Key="k")
    assert chaos_proxy.stats().requests == 3  # legacy max_attempts counts retries


def test_priority_comes_from_scope_then_hook_then_the_operation_mapping(
    make_pool, boto3_session, s3_client_for, local_s3, s3_bucket
) -> None:
    log = TaskLog()
    pool = make_pool(plugins=[log], priority=0)
    install(boto3_session, pool, priorities={"PutObject": 5, "GetObject": 9})
    client = s3_client_for(boto3_session, local_s3.endpoint_url)
    client.put_object(Bucket=s3_bucket, Key="a", Body=b"1")
    with priority_scope(100):
        client.get_object(Bucket=s3_bucket, Key="a")["Body"].read()
    client.head_object(Bucket=s3_bucket, Key="a")
    assert [(name, priority) for name, priority, *_ in log.done] == [
        ("S3.PutObject", 5),
        ("S3.GetObject", 100),
        ("S3.HeadObject", 0),
    ]


def test_installing_another_pool_replaces_the_first(make_pool, boto3_session, s3_client_for, local_s3) -> None:
    first, second = make_pool(), make_pool()
    install(boto3_session, first)
    install(boto3_session, second)
    client = s3_client_for(boto3_session, local_s3.endpoint_url)
    client.list_buckets()
    assert (first.stats().processed, second.stats().processed) == (0, 1)


def test_a_session_gets_enough_connections_for_the_pool(make_pool, boto3_session, s3_client_for, local_s3) -> None:
    install(boto3_session, make_pool(concurrency=32))
    client = s3_client_for(boto3_session, local_s3.endpoint_url)
    assert client.meta.config.max_pool_connections == 32


def test_a_client_with_too_few_connections_is_warned_about(make_pool, boto3_session, s3_client_for, local_s3) -> None:
    pool = make_pool(concurrency=16)
    small = s3_client_for(boto3.session.Session(region_name="us-east-1"), local_s3.endpoint_url, max_pool_connections=4)
    with pytest.warns(ConnectionPoolTooSmall, match="max_pool_connections=4.*up to 16"):
        install(small, pool)
    install(boto3_session, pool)
    with pytest.warns(ConnectionPoolTooSmall, match="max_pool_connections=2"):
        s3_client_for(boto3_session, local_s3.endpoint_url, max_pool_connections=2)


def test_pool_options_build_a_pool_of_their_own(boto3_session) -> None:
    from s3pool_plugins import ConfigurationError, OperationsPool, default_pool

    pool = install(boto3_session, concurrency=7, load_entrypoints=False)
    try:
        assert pool.concurrency == 7 and pool is not default_pool()
        with pytest.raises(ConfigurationError, match="concurrency"):
            install(boto3_session, pool, concurrency=3)
        with pytest.raises(ConfigurationError, match="concurrency"):
            install(boto3.session.Session(), concurrency=0)
    finally:
        pool.shutdown()
    assert isinstance(install(boto3.session.Session()), OperationsPool)  # the default pool


def test_each_attempt_is_admitted_before_it_is_signed(make_pool, boto3_session, local_s3, s3_bucket) -> None:
    """A request that waited for a slot is signed after the wait (else: RequestTimeTooSkewed)."""
    import threading
    import time
    from datetime import datetime, timezone

    pool = make_pool(concurrency=1)
    install(boto3_session, pool)
    client = boto3_session.client("s3", endpoint_url=local_s3.endpoint_url)
    signed_at: list[str] = []
    client.meta.events.register("before-send.s3", lambda request, **_: signed_at.append(request.headers["X-Amz-Date"]))
    held, release = threading.Event(), threading.Event()

    def hold_the_only_slot() -> None:
        with pool.admit():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_only_slot)
    holder.start()
    assert held.wait(5)
    caller = threading.Thread(target=client.put_object, kwargs={"Bucket": s3_bucket, "Key": "k", "Body": b"x"})
    caller.start()
    while pool.stats().queued == 0:
        time.sleep(0.005)
    time.sleep(2.2)
    released = time.time()
    release.set()
    caller.join(10)
    holder.join(10)
    signed = datetime.strptime(
        signed_at[0].decode() if isinstance(signed_at[0], bytes) else signed_at[0], "%Y%m%dT%H%M%SZ"
    )
    # X-Amz-Date has one-second resolution: signed before the wait would be >= 2 s before the release.
    assert signed.replace(tzinfo=timezone.utc).timestamp() >= released - 1.0


def test_bad_priorities_fail_at_install(make_pool, boto3_session) -> None:
    from s3pool_plugins import ConfigurationError

    pool = make_pool()
    for bad in ({"GetObject": "high"}, {"GetObject": float("nan")}):
        with pytest.raises(ConfigurationError, match=r"priorities\['GetObject'\]"):
            install(boto3_session, pool, priorities=bad)


def test_an_installed_client_records_bucket_key_and_result(
    make_pool, boto3_session, s3_client_for, local_s3, s3_bucket
):
    seen = []

    class Keep:
        @hookimpl
        def s3pool_task_completed(self, pool, task, result) -> None:
            seen.append((dict(task.metadata), result["ResponseMetadata"]["HTTPStatusCode"]))

    client = s3_client_for(boto3_session, local_s3.endpoint_url)
    install(client, make_pool(plugins=[Keep()]))
    client.put_object(Bucket=s3_bucket, Key="dir/k", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=b"k" * 32)
    metadata, status = seen[0]
    assert (metadata["bucket"], metadata["key"], status) == (s3_bucket, "dir/k", 200)
    assert set(metadata) == {"service", "operation", "bucket", "key", "region", "server_address"}  # nothing else
