"""install(..., tenant=...): the calls of each client or session count for their tenant of a shared pool."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest

from s3pool_plugins import ConfigurationError, hookimpl, install, tenant


class TenantLog:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[tuple[str, str | None]] = []

    @hookimpl
    def s3pool_task_started(self, pool: Any, task: Any) -> None:
        with self.lock:
            self.started.append((task.name, task.tenant))


def test_two_clients_installed_with_different_tenants_share_one_pool(
    make_pool, boto3_session, s3_client_for, local_s3, s3_bucket
) -> None:
    log = TenantLog()
    pool = make_pool(concurrency=2, tenants={"batch": 1, "web": 3}, plugins=[log])
    batch = s3_client_for(boto3_session, local_s3.endpoint_url)
    web = s3_client_for(boto3_session, local_s3.endpoint_url)
    assert install(batch, pool, tenant="batch") is pool
    assert install(web, pool, tenant="web") is pool
    batch.put_object(Bucket=s3_bucket, Key="k", Body=b"x")

    def calls(client: Any, n: int) -> None:
        for _ in range(n):
            assert client.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"x"

    threads = [threading.Thread(target=calls, args=(client, 10)) for client in (batch, web) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with tenant("audit"):  # a scope active at call time wins over the installation's tenant
        web.head_object(Bucket=s3_bucket, Key="k")

    tenants = [t for _, t in log.started]
    assert tenants.count("batch") == 1 + 30 and tenants.count("web") == 30
    assert log.started[-1] == ("S3.HeadObject", "audit")
    stats = pool.tenant_stats()
    assert {"batch", "web"} <= set(stats) and stats["web"].weight == 3
    assert pool.stats().queued == 0 and all(s.queued == 0 for s in stats.values())


def test_a_session_installed_with_a_tenant_gives_it_to_every_client(make_pool, local_s3, s3_client_for, s3_bucket):
    log = TenantLog()
    pool = make_pool(concurrency=2, plugins=[log])
    session = boto3.session.Session(
        aws_access_key_id=local_s3.access_key, aws_secret_access_key=local_s3.secret_key, region_name=local_s3.region
    )
    install(session, pool, tenant="etl")
    client = s3_client_for(session, local_s3.endpoint_url)
    client.put_object(Bucket=s3_bucket, Key="a", Body=b"1")
    assert log.started == [("S3.PutObject", "etl")]
    assert pool._fair is not None  # fair sharing is on; "etl" found a free slot, so it never queued


def test_install_refuses_a_bad_tenant(make_pool, boto3_session) -> None:
    with pytest.raises(ConfigurationError) as caught:
        install(boto3_session, make_pool(), tenant="")
    assert caught.value.option == "tenant"
