"""aiobotocore's streamed results keep their call's slot until read to the end, closed, failed or collected."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Awaitable, Callable
from typing import Any

import boto3
import pytest
from aiobotocore.session import AioSession

from s3pool_plugins import OperationsPool, install
from s3pool_plugins.adapters.botocore.bodies import AsyncCoveredBody, AsyncCoveredEventStream
from s3pool_plugins.testing import Action, ChaosProxy, LocalS3

from .test_botocore_bodies import MIB, assert_settled

pytestmark = pytest.mark.usefixtures("young_heap")  # gc.collect() traverses only what the tests made

Body = Any


def _run(pool: OperationsPool, local_s3: LocalS3, endpoint_url: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``work(client)`` with a client of an installed AioSession, on a new event loop."""

    async def main() -> Any:
        session = AioSession()
        install(session, pool)
        kwargs = local_s3.client_kwargs(endpoint_url)
        async with session.create_client("s3", **kwargs) as client:
            return await work(client)

    return asyncio.run(main())


@pytest.fixture
def data(local_s3: LocalS3, s3_bucket: str) -> bytes:
    payload = b"async line\n" * 3000
    plain = boto3.client("s3", **local_s3.client_kwargs())
    plain.put_object(Bucket=s3_bucket, Key="body.txt", Body=payload)
    plain.put_object(Bucket=s3_bucket, Key="table.csv", Body=b"a,b\n1,2\n3,4\n")
    return payload


async def _body(client: Any, bucket: str) -> Body:
    return (await client.get_object(Bucket=bucket, Key="body.txt"))["Body"]


async def _read_in_parts(body: Body) -> bytes:
    out = b""
    while chunk := await body.read(5000):
        out += chunk
    return out


async def _async_for(body: Body) -> bytes:
    return b"".join([chunk async for chunk in body])


async def _chunks(body: Body) -> bytes:
    return b"".join([chunk async for chunk in body.iter_chunks(4096)])


async def _lines(body: Body) -> bytes:
    return b"".join([line + b"\n" async for line in body.iter_lines()])


async def _readinto(body: Body) -> bytes:
    out, buffer = bytearray(), bytearray(7000)
    while count := await body.readinto(buffer):
        out += buffer[:count]
    return bytes(out)


async def _readlines(body: Body) -> bytes:
    return b"".join(line + b"\n" for line in await body.readlines())


async def _anext(body: Body) -> bytes:
    out = b""
    while chunk := await anext(body, b""):
        out += chunk
    return out


@pytest.mark.parametrize(
    "consume",
    [
        pytest.param(lambda body: body.read(), id="read"),
        pytest.param(_read_in_parts, id="read-in-parts"),
        pytest.param(_async_for, id="async-for"),
        pytest.param(_chunks, id="iter_chunks"),
        pytest.param(_lines, id="iter_lines"),
        pytest.param(_readinto, id="readinto"),
        pytest.param(_readlines, id="readlines"),
        pytest.param(_anext, id="anext"),
    ],
)
def test_reading_an_async_body_to_its_end_gives_the_slot_back(
    make_pool, local_s3, s3_bucket, data, consume: Callable[[Body], Awaitable[bytes]]
) -> None:
    pool = make_pool(concurrency=2)

    async def work(client: Any) -> None:
        body = await _body(client, s3_bucket)
        assert isinstance(body, AsyncCoveredBody) and pool.stats().active == 1
        assert await consume(body) == data
        assert pool.stats().active == 0

    _run(pool, local_s3, local_s3.endpoint_url, work)
    assert_settled(pool)


def test_readline_of_an_async_body_is_refused_without_reading_and_its_lines_still_end_the_slot(
    make_pool, local_s3, s3_bucket, data
) -> None:
    pool = make_pool(concurrency=2)

    async def work(client: Any) -> None:
        body = await _body(client, s3_bucket)
        with pytest.raises(TypeError, match=r"iter_lines"):
            body.readline()
        assert pool.stats().active == 1
        lines = [line async for line in body.iter_lines(keepends=True)]
        assert b"".join(lines) == data and len(lines) == data.count(b"\n")
        assert pool.stats().active == 0

    _run(pool, local_s3, local_s3.endpoint_url, work)
    assert_settled(pool)


def test_an_async_body_closed_early_or_left_by_async_with_gives_the_slot_back(
    make_pool, local_s3, s3_bucket, data
) -> None:
    pool = make_pool(concurrency=2)

    async def work(client: Any) -> None:
        body = await _body(client, s3_bucket)
        assert await body.read(10) == data[:10]
        body.close()
        assert pool.stats().active == 0
        async with await _body(client, s3_bucket) as body:
            assert await body.read(10) == data[:10]
            assert pool.stats().active == 1
        assert pool.stats().active == 0

    _run(pool, local_s3, local_s3.endpoint_url, work)
    assert_settled(pool)


def test_an_async_body_never_read_gives_the_slot_back_when_collected(make_pool, local_s3, s3_bucket, data) -> None:
    pool = make_pool(concurrency=2)

    async def work(client: Any) -> None:
        response = await client.get_object(Bucket=s3_bucket, Key="body.txt")
        assert pool.stats().active == 1
        del response
        gc.collect()

    _run(pool, local_s3, local_s3.endpoint_url, work)
    assert_settled(pool)


def test_an_async_body_that_fails_mid_read_gives_the_slot_back(
    make_pool, local_s3, s3_bucket, chaos_proxy: ChaosProxy
) -> None:
    boto3.client("s3", **local_s3.client_kwargs()).put_object(Bucket=s3_bucket, Key="cut.bin", Body=os.urandom(MIB))
    pool = make_pool(concurrency=2)
    chaos_proxy.configure(truncate_fraction=0.5)
    chaos_proxy.inject(Action.TRUNCATE)

    async def work(client: Any) -> None:
        body = (await client.get_object(Bucket=s3_bucket, Key="cut.bin"))["Body"]
        with pytest.raises(Exception):  # aiohttp's and botocore's errors both end a cut body
            while await body.read(64 * 1024):
                pass
        assert pool.stats().active == 0

    _run(pool, local_s3, chaos_proxy.endpoint_url, work)
    assert_settled(pool)


def test_many_async_tasks_reading_slow_bodies_stay_within_the_limit_at_the_proxy(
    make_pool, local_s3, s3_bucket, chaos_proxy: ChaosProxy
) -> None:
    payload = os.urandom(MIB)
    plain = boto3.client("s3", **local_s3.client_kwargs())
    for i in range(12):
        plain.put_object(Bucket=s3_bucket, Key=f"slow/{i}", Body=payload)
    pool = make_pool(concurrency=3)
    chaos_proxy.configure(slow_body_rate=1.0, slow_body_bytes_per_second=8 * MIB)
    chaos_proxy.reset_counts()

    async def work(client: Any) -> None:
        async def read(i: int) -> bytes:
            response = await client.get_object(Bucket=s3_bucket, Key=f"slow/{i}")
            return await response["Body"].read()

        assert all(body == payload for body in await asyncio.gather(*(read(i) for i in range(12))))

    _run(pool, local_s3, chaos_proxy.endpoint_url, work)
    stats = chaos_proxy.stats()
    assert stats.slow_bodies == 12
    assert stats.in_flight_peak <= 3, stats  # without the body's slot: all 12 at once
    assert_settled(pool)


def test_an_async_select_stream_holds_its_slot_until_its_events_are_read(make_pool, local_s3, s3_bucket, data) -> None:
    pool = make_pool(concurrency=2)

    async def select(client: Any) -> Any:
        response = await client.select_object_content(
            Bucket=s3_bucket,
            Key="table.csv",
            Expression="SELECT * FROM S3Object",
            ExpressionType="SQL",
            InputSerialization={"CSV": {"FileHeaderInfo": "USE"}},
            OutputSerialization={"CSV": {}},
        )
        return response["Payload"]

    async def work(client: Any) -> None:
        stream = await select(client)
        assert isinstance(stream, AsyncCoveredEventStream) and pool.stats().active == 1
        events = [event async for event in stream]
        assert b"1,2" in events[0]["Records"]["Payload"] and "End" in events[-1]
        assert pool.stats().active == 0
        stream = await select(client)
        stream.close()
        assert pool.stats().active == 0

    _run(pool, local_s3, local_s3.endpoint_url, work)
    assert_settled(pool)


def test_an_async_client_installed_alone_covers_its_bodies_too(make_pool, local_s3, s3_bucket, data) -> None:
    pool = make_pool(concurrency=2)

    async def main() -> None:
        async with AioSession().create_client("s3", **local_s3.client_kwargs()) as client:
            install(client, pool)
            body = await _body(client, s3_bucket)
            assert isinstance(body, AsyncCoveredBody) and pool.stats().active == 1
            assert await body.read() == data
            assert pool.stats().active == 0
            response = await client.get_object(Bucket=s3_bucket, Key="body.txt")
            del response
            gc.collect()

    asyncio.run(main())
    assert_settled(pool)
