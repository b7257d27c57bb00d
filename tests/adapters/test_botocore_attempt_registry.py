"""The per-thread 'attempting call' of events-only clients (handlers._thread_attempt)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from s3pool_plugins import install

pytestmark = pytest.mark.usefixtures("young_heap")  # gc.collect() traverses only what the tests made

PATH_STYLE = Config(s3={"addressing_style": "path"})


class _Raw:
    def stream(self, *_args, **_kwargs):
        yield b""


def _ok(request, **_):
    return AWSResponse(request.url, 200, {"ETag": '"x"'}, _Raw())


def _client(pool):
    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    client = session.client("s3", endpoint_url="http://127.0.0.1:9", config=PATH_STYLE)
    install(client, pool)  # events only
    client.meta.events.register("before-send.s3", _ok)
    return client


def test_every_call_made_during_an_attempt_runs_under_its_slot(make_pool) -> None:
    # docs/botocore.md: "a call that botocore makes during an attempt ... runs under the attempt's slot".
    # The registry keeps one call per thread: the first nested call replaces the outer one, so a second
    # call made during the same outer attempt queued behind the slot that attempt holds (a hang at concurrency 1).
    pool = make_pool(concurrency=1, queue_timeout=2.0)  # without queue_timeout: a hang
    outer, other = _client(pool), _client(pool)

    def two_lookups(**_):
        other.head_bucket(Bucket="one")
        other.head_bucket(Bucket="two")

    outer.meta.events.register("before-sign.s3.PutObject", two_lookups)
    outer.put_object(Bucket="b", Key="k", Body=b"x")
    assert pool.stats().nested == 2


def test_a_pool_used_by_an_events_only_client_can_be_collected() -> None:
    # The thread-local keeps the last attempting Call, and the Call its pool, for as long as the thread lives.
    code = textwrap.dedent(
        """
        import gc, weakref, boto3
        from botocore.awsrequest import AWSResponse
        from botocore.config import Config
        from s3pool_plugins import OperationsPool, install

        class Raw:
            def stream(self, *a, **k):
                yield b""

        pool = OperationsPool(load_entrypoints=False)
        session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
        client = session.client("s3", endpoint_url="http://127.0.0.1:9", config=Config(s3={"addressing_style": "path"}))
        install(client, pool)
        client.meta.events.register("before-send.s3", lambda request, **_: AWSResponse(request.url, 200, {}, Raw()))
        client.head_bucket(Bucket="b")
        pool.shutdown(wait=True)
        alive = weakref.ref(pool)
        del pool, client, session
        gc.collect()
        print("alive" if alive() is not None else "collected")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "collected", done.stdout + done.stderr[-2000:]


def test_uninstall_undoes_installing_another_pool_on_a_client_of_an_installed_session(
    make_pool, boto3_session, s3_client_for, local_s3
) -> None:
    from s3pool_plugins import installed_pool, uninstall

    first, second = make_pool(), make_pool()
    install(boto3_session, first)
    client = s3_client_for(boto3_session, local_s3.endpoint_url)
    assert install(client, second) is second
    assert uninstall(client) is True  # docs/botocore.md: "uninstall(target) undoes it"; it returned False
    client.list_buckets()
    assert installed_pool(client) is first
    assert (first.stats().processed, second.stats().processed) == (1, 0)
