"""Edges of the botocore adapter: S3 Express nesting, credentials kept out of hooks, reinstalling, transfer threads."""

from __future__ import annotations

import base64
import datetime
import threading

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

from s3pool_plugins import hookimpl, install, installed_pool
from s3pool_plugins.adapters.botocore import transfer

PATH_STYLE = Config(s3={"addressing_style": "path"})
EXPRESS_BUCKET = "mybucket--use1-az4--x-s3"  # an S3 Express directory bucket: signing needs CreateSession first


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, *_args, **_kwargs):
        yield self.body


def _express_responder(seen: list[str]):
    expires = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    session = (
        "<CreateSessionOutput><Credentials><SessionToken>EXPRESS-TOKEN</SessionToken>"
        "<SecretAccessKey>EXPRESS-SECRET</SecretAccessKey><AccessKeyId>AK</AccessKeyId>"
        f"<Expiration>{expires}</Expiration></Credentials></CreateSessionOutput>"
    ).encode()

    def respond(request, **_):
        seen.append(request.url.rsplit("/", 1)[-1])
        if request.url.endswith("?session"):
            return AWSResponse(request.url, 200, {}, _Raw(session))
        return AWSResponse(request.url, 200, {"ETag": '"x"'}, _Raw(b""))

    return respond


def _client(make_pool_result, installed_on: str, endpoint_url: str = "http://127.0.0.1:9", **credentials):
    session = boto3.session.Session(
        **(credentials or {"aws_access_key_id": "k", "aws_secret_access_key": "s"}), region_name="us-east-1"
    )
    if installed_on == "session":
        install(session, make_pool_result)
    client = session.client("s3", endpoint_url=endpoint_url, config=PATH_STYLE)
    if installed_on == "client":
        install(client, make_pool_result)
    return client


@pytest.mark.parametrize("installed_on", ["session", "client"])
def test_s3_express_create_session_runs_under_the_signing_attempts_slot(make_pool, installed_on) -> None:
    pool = make_pool(concurrency=1, queue_timeout=2.0)  # without queue_timeout: a hang
    client = _client(pool, installed_on)
    seen: list[str] = []
    client.meta.events.register("before-send.s3", _express_responder(seen))
    client.put_object(Bucket=EXPRESS_BUCKET, Key="k", Body=b"x")
    assert seen == [f"{EXPRESS_BUCKET}?session", "k"]
    assert pool.stats().nested == 1


@pytest.mark.parametrize("installed_on", ["session", "client"])
def test_s3_express_session_credentials_stay_out_of_hooks(make_pool, installed_on) -> None:
    results: list[str] = []

    class Keep:
        @hookimpl
        def s3pool_task_completed(self, pool, task, result) -> None:
            results.append(repr(result))

    client = _client(make_pool(concurrency=4, plugins=[Keep()]), installed_on)
    client.meta.events.register("before-send.s3", _express_responder([]))
    client.put_object(Bucket=EXPRESS_BUCKET, Key="k", Body=b"x")
    assert len(results) == 2
    assert not [r for r in results if "EXPRESS-SECRET" in r or "EXPRESS-TOKEN" in r], results


@pytest.mark.parametrize("installed_on", ["session", "client"])
def test_a_reset_connections_signed_request_stays_out_of_hooks(
    make_pool, local_s3, chaos_proxy, s3_bucket, installed_on
):
    errors: list[BaseException] = []

    class Keep:
        @hookimpl
        def s3pool_task_retry(self, pool, task, error, delay, classification) -> None:
            errors.append(error)

        @hookimpl
        def s3pool_task_error(self, pool, task, error) -> None:
            errors.append(error)

    pool = make_pool(retries=1, retry_delay=0.0, plugins=[Keep()])
    client = _client(
        pool,
        installed_on,
        chaos_proxy.endpoint_url,
        aws_access_key_id=local_s3.access_key,
        aws_secret_access_key=local_s3.secret_key,
        aws_session_token="SESSION-TOKEN-0123",
    )
    chaos_proxy.configure(reset_rate=1.0)
    sse_c_key = b"0123456789abcdef0123456789abcdef"
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)) as caught:
        client.put_object(Bucket=s3_bucket, Key="k", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=sse_c_key)
    assert any(
        "gave up after 2 attempts" in note for note in caught.value.__notes__
    )  # the caller's error keeps its notes
    assert len(errors) == 2
    seen = repr([dict(getattr(getattr(e, "request", None), "headers", None) or {}) for e in errors])
    for secret in ("SESSION-TOKEN-0123", "Signature=", base64.b64encode(sse_c_key).decode()):
        assert secret not in seen, secret


def test_installing_another_pool_on_a_client_of_an_installed_session_replaces_it(
    make_pool, boto3_session, s3_client_for, local_s3
):
    first, second = make_pool(), make_pool()
    install(boto3_session, first)
    client = s3_client_for(boto3_session, local_s3.endpoint_url)
    assert install(client, second) is second  # "with others they replace the old ones"
    client.list_buckets()
    assert installed_pool(client) is second
    assert (first.stats().processed, second.stats().processed) == (0, 1)


def test_transfer_honours_use_threads_false(make_pool, boto3_session, s3_client_for, local_s3, s3_bucket, tmp_path):
    install(boto3_session, make_pool())
    client = s3_client_for(boto3_session, local_s3.endpoint_url)
    threads: set[int] = set()
    client.meta.events.register("before-call.s3.PutObject", lambda **_: threads.add(threading.get_ident()))
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    transfer(client, TransferConfig(use_threads=False)).upload_file(str(path), s3_bucket, "f")
    assert threads == {threading.get_ident()}  # as boto3's own upload_file does with use_threads=False


class _AsyncRaw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    async def read(self, *_args: object) -> bytes:
        return self.body


def test_s3_express_create_session_nests_on_an_async_client_installed_alone(make_pool) -> None:
    """The async events-only route: CreateSession, made while the outer request is signed, runs under
    the slot that request's attempt holds (found through its asyncio task)."""
    import asyncio

    from aiobotocore.awsrequest import AioAWSResponse
    from aiobotocore.session import AioSession

    pool = make_pool(concurrency=1, queue_timeout=2.0)  # without queue_timeout: a hang
    seen: list[str] = []
    sync_respond = _express_responder(seen)

    def respond(request, **_):
        answer = sync_respond(request)
        return AioAWSResponse(answer.url, answer.status_code, answer.headers, _AsyncRaw(answer.raw.body))

    async def main() -> None:
        session = AioSession()
        session.set_credentials("k", "s")
        async with session.create_client(
            "s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:9", config=PATH_STYLE
        ) as client:
            install(client, pool)
            client.meta.events.register("before-send.s3", respond)
            await client.put_object(Bucket=EXPRESS_BUCKET, Key="k", Body=b"x")

    asyncio.run(main())
    assert seen == [f"{EXPRESS_BUCKET}?session", "k"]
    assert pool.stats().nested == 1


_REENTERED_SETTLER = """
import os, threading
from s3pool_plugins import OperationsPool
from s3pool_plugins.adapters.botocore import handlers

pool = OperationsPool(load_entrypoints=False)
first = pool.begin_call("S3.First", contextual=False)
second = pool.begin_call("S3.Second", contextual=False)
real_init = threading.Thread.__init__

def init(self, *args, **kwargs):
    if kwargs.get("name") == "s3pool-abandoned-calls":
        handlers._hand_over(second)  # what a finalizer run by the collector right here would do
    real_init(self, *args, **kwargs)

worker = threading.Thread(target=handlers._hand_over, args=(first,), daemon=True)
threading.Thread.__init__ = init
worker.start()
worker.join(5)
if worker.is_alive():
    print("deadlocked", flush=True)
    os._exit(1)
pool.drain(timeout=5)
print(first.finished, second.finished, sum(t.name == "s3pool-abandoned-calls" for t in threading.enumerate()))
"""


def test_a_finalizer_handing_over_a_call_while_the_settler_starts_does_not_deadlock() -> None:
    """_ContextGuard.__del__ can run inside any code, also while its own thread starts the settler
    thread: it must neither deadlock nor start a second settler. In a fresh interpreter, where the
    settler has not started yet."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _REENTERED_SETTLER], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["True", "True", "1"]
