"""Under faults nothing is lost, errors surface as botocore raises them, and no slot ever leaks."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from aiobotocore.session import AioSession
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from s3pool_plugins import hookimpl, install
from s3pool_plugins.adapters.botocore import S3ResponseError
from s3pool_plugins.testing import Latency

pytestmark = pytest.mark.usefixtures("young_heap")  # gc.collect() traverses only what the tests made

PATH_STYLE = Config(s3={"addressing_style": "path"})


class Attempts:
    """Records the attempts of every finished call, by object key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_call: list[tuple[str, str, int]] = []
        self.retry_delays: list[float] = []

    @hookimpl
    def s3pool_task_completed(self, pool, task, result) -> None:
        with self.lock:
            self.by_call.append((task.metadata.get("operation"), task.metadata.get("key"), task.attempt))

    @hookimpl
    def s3pool_task_retry(self, pool, task, error, delay, classification) -> None:
        with self.lock:
            self.retry_delays.append(delay)


def _payload(i: int) -> bytes:
    return hashlib.sha256(str(i).encode()).digest() * (1 + i % 7)


def test_a_thousand_objects_survive_throttling_and_resets(make_pool, boto3_session, chaos_proxy, s3_bucket) -> None:
    attempts = Attempts()
    pool = make_pool(concurrency=16, retries=12, retry_delay=0.002, max_retry_delay=0.05, plugins=[attempts])
    install(boto3_session, pool)
    client = boto3_session.client("s3", endpoint_url=chaos_proxy.endpoint_url, config=PATH_STYLE)
    chaos_proxy.reseed(1234)
    chaos_proxy.configure(throttle_rate=0.30, reset_rate=0.05)
    keys = [f"soak/{i:04d}" for i in range(1000)]

    def write(i: int) -> None:
        client.put_object(Bucket=s3_bucket, Key=keys[i], Body=_payload(i))

    def read(i: int) -> bool:
        return client.get_object(Bucket=s3_bucket, Key=keys[i])["Body"].read() == _payload(i)

    with ThreadPoolExecutor(16) as executor:
        list(executor.map(write, range(1000)))
        identical = list(executor.map(read, range(1000)))
    assert all(identical)
    chaos_proxy.wait_idle()
    stats, seen = pool.stats(), chaos_proxy.stats()
    assert (stats.errors, stats.succeeded, stats.active, stats.pending) == (0, 2000, 0, 0)
    assert seen.throttled > 300 and seen.resets > 50  # the faults really happened
    # Every attempt the pool admitted reached the proxy, and no other request did.
    assert sum(n for *_, n in attempts.by_call) == seen.requests
    assert stats.retries == seen.requests - 2000
    for operation, key, made in attempts.by_call:
        method = "PUT" if operation == "PutObject" else "GET"
        assert seen.attempts_for(f"{s3_bucket}/{key}", method) == made, (operation, key)
        assert made <= 13


def test_exhausted_retries_name_the_attempts_and_the_last_code(make_pool, boto3_session, chaos_proxy, s3_bucket):
    pool = make_pool(retries=3, retry_delay=0.001)
    install(boto3_session, pool)
    client = boto3_session.client("s3", endpoint_url=chaos_proxy.endpoint_url, config=PATH_STYLE)
    chaos_proxy.configure(throttle_rate=1.0)
    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket=s3_bucket, Key="hot")
    message = str(caught.value) + " ".join(caught.value.__notes__)
    assert "SlowDown" in message and "reached max retries: 3" in message and "4 attempts" in message
    chaos_proxy.configure(throttle_rate=0.0, reset_rate=1.0)
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)) as reset:
        client.get_object(Bucket=s3_bucket, Key="hot")
    assert any("gave up after 4 attempts" in note for note in reset.value.__notes__)


def test_not_retryable_errors_surface_exactly_as_without_the_pool(make_pool, local_s3, s3_bucket) -> None:
    bare = local_s3.client()
    pooled_session = boto3.session.Session(**_credentials(local_s3))
    install(pooled_session, make_pool(retries=5))
    pooled = pooled_session.client("s3", endpoint_url=local_s3.endpoint_url, config=PATH_STYLE)
    for call in (
        lambda c: c.get_object(Bucket=s3_bucket, Key="missing"),
        lambda c: c.head_object(Bucket=s3_bucket, Key="missing"),
        lambda c: c.list_objects_v2(Bucket="no-such-bucket-here"),
    ):
        with pytest.raises(ClientError) as without:
            call(bare)
        with pytest.raises(ClientError) as with_pool:
            call(pooled)
        # Each client has its own error classes: compare what they are, not their identity.
        assert type(with_pool.value).__name__ == type(without.value).__name__
        assert str(with_pool.value) == str(without.value)
        assert with_pool.value.response["Error"] == without.value.response["Error"]
        assert with_pool.value.response["ResponseMetadata"]["RetryAttempts"] == 0


def _credentials(local_s3) -> dict[str, str]:
    return {
        "aws_access_key_id": local_s3.access_key,
        "aws_secret_access_key": local_s3.secret_key,
        "region_name": local_s3.region,
    }


def _responder(statuses: list[tuple[int, bytes, dict[str, str]]]):
    """A ``before-send`` handler that answers from ``statuses`` without any network."""

    def respond(request, **_):
        status, body, headers = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        raw = _Raw(body)
        return AWSResponse(request.url, status, {"x-amz-request-id": "REQ", **headers}, raw)

    return respond


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, *_args, **_kwargs):
        yield self.body


SLOW_DOWN = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"


def test_x_amz_retry_after_sets_the_delay(make_pool) -> None:
    attempts = Attempts()
    pool = make_pool(retries=2, retry_delay=5.0, plugins=[attempts])
    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    install(session, pool)
    client = session.client("s3", endpoint_url="http://127.0.0.1:9", config=PATH_STYLE)
    client.meta.events.register(
        "before-send.s3",
        _responder([(503, SLOW_DOWN, {"x-amz-retry-after": "30"}), (200, b"", {"ETag": '"abc"'})]),
    )
    client.put_object(Bucket="bucket", Key="k", Body=b"x")
    assert attempts.retry_delays == [0.03]  # not the 0..5 s backoff
    assert pool.stats().throttled == 1


@pytest.mark.parametrize(
    ("status", "code", "retried", "throttling"),
    [
        (503, "SlowDown", True, True),
        (503, "503", True, True),
        (500, "InternalError", True, False),
        (502, "502", True, False),
        (504, "504", True, False),
        (400, "RequestTimeout", True, False),
        (403, "AccessDenied", False, False),
        (404, "NoSuchKey", False, False),
    ],
)
def test_s3_status_and_codes_are_classified(make_pool, status, code, retried, throttling) -> None:
    pool = make_pool(retries=1, retry_delay=0.0)
    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    install(session, pool)
    client = session.client("s3", endpoint_url="http://127.0.0.1:9", config=PATH_STYLE)
    body = f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode()
    client.meta.events.register("before-send.s3", _responder([(status, body, {})]))
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket="bucket", Key="k", Body=b"x")
    assert caught.value.response["Error"]["Code"] == code
    assert pool.stats().retries == (1 if retried else 0)
    assert pool.stats().throttled == ((2 if retried else 1) if throttling else 0)


def test_a_plugin_can_reclassify_s3_errors(make_pool) -> None:
    from s3pool_plugins import NOT_RETRYABLE

    class NeverRetrySlowDown:
        @hookimpl
        def s3pool_classify_error(self, pool, task, error):
            if isinstance(error, S3ResponseError) and error.code == "SlowDown":
                return NOT_RETRYABLE
            return None

    pool = make_pool(retries=3, plugins=[NeverRetrySlowDown()])
    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    install(session, pool)
    client = session.client("s3", endpoint_url="http://127.0.0.1:9", config=PATH_STYLE)
    client.meta.events.register("before-send.s3", _responder([(503, SLOW_DOWN, {})]))
    with pytest.raises(ClientError):
        client.put_object(Bucket="bucket", Key="k", Body=b"x")
    assert pool.stats().retries == 0


# -- no slot leaks, whatever fails where ------------------------------------------


class Boom(Exception):
    pass


class Interrupt(BaseException):
    """Like KeyboardInterrupt: not an Exception, so botocore's events do not report it."""


def _raiser(error: type[BaseException]):
    def handler(**_):
        raise error("someone else's handler")  # a new one each time, as KeyboardInterrupt would be

    return handler


PHASES = [
    ("before-call.s3", Boom),
    ("request-created.s3", Boom),
    ("before-send.s3", Boom),
    ("before-send.s3", Interrupt),
    ("needs-retry.s3", Boom),
    ("after-call.s3", Boom),
]


@pytest.mark.parametrize("installed_on", ["session", "client"])
@pytest.mark.parametrize(("event", "error"), PHASES, ids=[f"{e}-{x.__name__}" for e, x in PHASES])
def test_a_failure_in_any_phase_releases_the_slot(make_pool, local_s3, s3_bucket, installed_on, event, error) -> None:
    pool = make_pool(concurrency=1, retries=2, retry_delay=0.0)
    session = boto3.session.Session(**_credentials(local_s3))
    if installed_on == "session":
        install(session, pool)
        client = session.client("s3", endpoint_url=local_s3.endpoint_url, config=PATH_STYLE)
    else:
        client = session.client("s3", endpoint_url=local_s3.endpoint_url, config=PATH_STYLE)
        install(client, pool)
    client.meta.events.register(event, _raiser(error))
    raised = False
    try:
        client.put_object(Bucket=s3_bucket, Key="k", Body=b"x")
    except error:  # not pytest.raises: its ExceptionInfo would keep the failed call's frames alive
        raised = True
    assert raised
    gc.collect()  # an events-only client settles an abandoned call once botocore drops its context
    for _ in range(500):
        if pool.stats().pending == 0:
            break
        time.sleep(0.01)
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending, stats.backing_off) == (0, 0, 0, 0), stats
    # An events-only client begins the call in its own before-call handler, which runs after the one that raised.
    began = not (installed_on == "client" and event.startswith("before-call"))
    assert stats.processed == (1 if began else 0)
    assert pool.submit(lambda: "still works").result(timeout=5) == "still works"
    # Nothing of the failed call stays in this thread's context: the next call queues as usual.
    assert pool.stats().nested == 0


@pytest.mark.parametrize("installed_on", ["session", "client"])
async def test_cancelling_async_calls_releases_their_slots(make_pool, local_s3, chaos_proxy, s3_bucket, installed_on):
    pool = make_pool(concurrency=2)
    session = AioSession()
    if installed_on == "session":
        install(session, pool)
    chaos_proxy.configure(latency=Latency(0.5, sigma=0.0))
    kwargs = local_s3.client_kwargs(chaos_proxy.endpoint_url)
    async with session.create_client("s3", config=PATH_STYLE, **kwargs) as client:
        if installed_on == "client":
            install(client, pool)
        calls = [asyncio.ensure_future(client.put_object(Bucket=s3_bucket, Key=f"c{i}", Body=b"x")) for i in range(5)]
        for _ in range(200):
            if pool.stats().active == 2 and pool.stats().queued == 3:
                break
            await asyncio.sleep(0.01)
        assert pool.stats().active == 2 and pool.stats().queued == 3  # two in HTTP, three waiting for a slot
        for call in calls:
            call.cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        for _ in range(500):  # the tasks' done-callbacks hand abandoned calls to the settler thread
            if pool.stats().pending == 0:
                break
            await asyncio.sleep(0.01)
        stats = pool.stats()
        assert (stats.active, stats.queued, stats.pending, stats.cancelled) == (0, 0, 0, 5), stats
        chaos_proxy.clear_faults()
        await client.put_object(Bucket=s3_bucket, Key="after", Body=b"ok")
    assert pool.stats().succeeded == 1


SIGNATURE_MISMATCH = (
    b"<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match"
    b"</Message><AWSAccessKeyId>AKIAS3POOLECHOED0001</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256 echoed"
    b"</StringToSign><SignatureProvided>deadbeefsignature</SignatureProvided></Error>"
)


@pytest.mark.parametrize("installed_on", ["session", "client"])
def test_signing_material_echoed_by_s3_stays_out_of_hooks(make_pool, installed_on) -> None:
    payloads: list[str] = []

    class Keep:
        @hookimpl
        def s3pool_task_error(self, pool, task, error) -> None:
            payloads.append(repr(error) + repr(getattr(error, "response", None)) + repr(task.last_error))

    pool = make_pool(retries=0, plugins=[Keep()])
    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    if installed_on == "session":
        install(session, pool)
    client = session.client("s3", endpoint_url="http://127.0.0.1:9", config=PATH_STYLE)
    if installed_on == "client":
        install(client, pool)
    client.meta.events.register("before-send.s3", _responder([(403, SIGNATURE_MISMATCH, {})]))
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket="bucket", Key="k", Body=b"x")
    assert caught.value.response["Error"]["AWSAccessKeyId"] == "AKIAS3POOLECHOED0001"  # the caller's error: unchanged
    assert payloads and all(code in payloads[0] for code in ("SignatureDoesNotMatch",))
    for secret in ("AKIAS3POOLECHOED0001", "AWS4-HMAC-SHA256 echoed", "deadbeefsignature"):
        assert secret not in payloads[0]
