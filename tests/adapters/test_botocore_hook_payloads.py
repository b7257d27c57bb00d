"""Nothing reachable from a hook payload leads to credentials, a signature or an SSE-C key.

Hooks and ``pool.on`` callbacks get the task, the call's result or error, and
the metrics. A payload that is a live botocore object could lead, through
private attributes, to the signed request: aiobotocore's streaming body keeps
``_raw_stream._request_info`` (its headers hold ``Authorization``,
``X-Amz-Security-Token`` and the SSE-C key), urllib3's response keeps its
connection pool and original response. The test walks the object graph of
every payload, through instance attributes, slots and container items, and
looks for the secrets in every string and bytes object it reaches.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import types
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.config import Config
from botocore.session import Session as BotocoreSession

from s3pool_plugins import EVENT_SIGNATURES, hookimpl, install
from s3pool_plugins.testing import Action

ACCESS_KEY = "AKIAS3POOLWALKCHECK01"
SECRET_KEY = "s3pool/walk-check/SECRET+never-reachable/0123456789"
SESSION_TOKEN = "s3pool-walk-check-SESSION-TOKEN-0123456789abcdef"
SSE_C_KEY = b"s3pool-walk-check-SSE-C-key-32b!"
SSE = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY}
CREDENTIALS = {
    "aws_access_key_id": ACCESS_KEY,
    "aws_secret_access_key": SECRET_KEY,
    "aws_session_token": SESSION_TOKEN,
    "region_name": "us-east-1",
}
SECRETS = {
    "access key": ACCESS_KEY,
    "secret key": SECRET_KEY,
    "session token": SESSION_TOKEN,
    "SSE-C key": SSE_C_KEY.decode(),
    "SSE-C key (base64)": base64.b64encode(SSE_C_KEY).decode(),
    "signature": "Signature=",
}

# Code and module objects lead to every global of the process (the test's own constants included);
# frames and tracebacks hold the locals of whoever called botocore. The walk follows data, and the
# closure cells of functions (a callback's captured values), not these.
NOT_FOLLOWED = (
    type,
    types.ModuleType,
    types.CodeType,
    types.FrameType,
    types.TracebackType,
    types.BuiltinFunctionType,
)
WALK_LIMIT = 500_000


def reachable(roots: Iterable[object]) -> Iterator[object]:
    """Every object reachable from ``roots`` through attributes, slots, items and closures (bounded)."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, NOT_FOLLOWED):
            continue
        seen.add(id(obj))
        assert len(seen) < WALK_LIMIT, "the walk does not end: the payloads reach far too much"
        yield obj
        if isinstance(obj, types.FunctionType):
            stack.extend(cell.cell_contents for cell in obj.__closure__ or () if _filled(cell))
            stack.extend(obj.__defaults__ or ())
            continue
        stack.extend(gc.get_referents(obj))
        if hasattr(obj, "__dict__") and not isinstance(obj, type):
            stack.append(vars(obj))
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if isinstance(name, str) and hasattr(obj, name):
                    stack.append(getattr(obj, name))


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def leaks(roots: Iterable[object]) -> dict[str, str]:
    """The secrets found in any string or bytes reachable from ``roots``, with where (the type holding it)."""
    found: dict[str, str] = {}
    count = 0
    for obj in reachable(roots):
        count += 1
        if isinstance(obj, (bytes, bytearray, memoryview)):
            text = bytes(obj).decode("latin-1")
        elif isinstance(obj, str):
            text = obj
        else:
            continue
        for what, secret in SECRETS.items():
            if secret in text:
                found.setdefault(what, text[:200])
    assert count > 100, "the walk saw almost nothing: it proves nothing"
    return found


class Payloads:
    """Keeps every argument of every task hook (but the pool), and of every ``pool.on`` callback."""

    def __init__(self) -> None:
        self.kept: list[object] = []
        self.hooks: set[str] = set()

    def _keep(self, hook: str, *values: object) -> None:
        self.hooks.add(hook)
        self.kept.extend(values)

    @hookimpl
    def s3pool_task_queued(self, pool, task):
        self._keep("queued", task)

    @hookimpl
    def s3pool_task_started(self, pool, task):
        self._keep("started", task)

    @hookimpl
    def s3pool_task_retry(self, pool, task, error, delay, classification):
        self._keep("retry", task, error, classification)

    @hookimpl
    def s3pool_task_completed(self, pool, task, result):
        self._keep("completed", task, result)

    @hookimpl
    def s3pool_task_error(self, pool, task, error):
        self._keep("error", task, error)

    @hookimpl
    def s3pool_task_metrics(self, pool, task, metrics):
        self._keep("metrics", task, metrics)

    def subscribe(self, pool: Any) -> None:
        for event in EVENT_SIGNATURES:
            pool.on(event, lambda *args, _event=event: self._keep(_event, *args))


def _pool(make_pool: Any) -> tuple[Any, Payloads]:
    payloads = Payloads()
    pool = make_pool(retries=2, retry_delay=0.001, monitoring="full", plugins=[payloads])
    payloads.subscribe(pool)
    return pool, payloads


def _check(payloads: Payloads, bodies: list[bytes]) -> None:
    assert bodies == [b"secret payload"] * len(bodies)
    assert {"completed", "retry", "pool:taskCompleted", "pool:taskRetry"} <= payloads.hooks
    assert any(isinstance(value, dict) and "Body" in value for value in payloads.kept), "no GetObject result seen"
    assert not leaks(payloads.kept)


@pytest.mark.parametrize("route", ["session", "client"])
def test_sync_payloads_lead_to_no_secret(make_pool, local_s3, chaos_proxy, s3_bucket, route) -> None:
    pool, payloads = _pool(make_pool)
    config = Config(s3={"addressing_style": "path"})
    if route == "session":
        session = boto3.session.Session(**CREDENTIALS)
        install(session, pool)
        s3 = session.client("s3", endpoint_url=chaos_proxy.endpoint_url, config=config)
    else:
        s3 = BotocoreSession().create_client("s3", endpoint_url=chaos_proxy.endpoint_url, config=config, **CREDENTIALS)
        install(s3, pool)
    s3.put_object(Bucket=s3_bucket, Key="secret-object", Body=b"secret payload", **SSE)
    chaos_proxy.inject(Action.THROTTLE, 1)  # retries: their errors are payloads too
    chaos_proxy.inject(Action.RESET, 1)
    unread = s3.get_object(Bucket=s3_bucket, Key="secret-object", **SSE)
    response = s3.get_object(Bucket=s3_bucket, Key="secret-object", **SSE)
    bodies = [response["Body"].read()]
    assert (chaos_proxy.stats().throttled, chaos_proxy.stats().resets) == (1, 1)
    _check(payloads, bodies)
    unread["Body"].close()


@pytest.mark.parametrize("route", ["session", "client"])
async def test_aiobotocore_payloads_lead_to_no_secret(make_pool, local_s3, chaos_proxy, s3_bucket, route) -> None:
    pool, payloads = _pool(make_pool)
    session = AioSession()
    if route == "session":
        install(session, pool)
    config = AioConfig(s3={"addressing_style": "path"})
    async with session.create_client("s3", endpoint_url=chaos_proxy.endpoint_url, config=config, **CREDENTIALS) as s3:
        if route == "client":
            install(s3, pool)
        await s3.put_object(Bucket=s3_bucket, Key="secret-object", Body=b"secret payload", **SSE)
        chaos_proxy.inject(Action.THROTTLE, 1)
        chaos_proxy.inject(Action.RESET, 1)
        unread = await s3.get_object(Bucket=s3_bucket, Key="secret-object", **SSE)
        response = await s3.get_object(Bucket=s3_bucket, Key="secret-object", **SSE)
        async with response["Body"] as body:
            bodies = [await body.read()]
        assert (chaos_proxy.stats().throttled, chaos_proxy.stats().resets) == (1, 1)
        _check(payloads, bodies)
        unread["Body"].close()
    await asyncio.sleep(0)


def test_the_walk_finds_a_secret_behind_private_attributes() -> None:
    class Holder:
        __slots__ = ("_hidden",)

        def __init__(self, hidden: object) -> None:
            self._hidden = hidden

    class Inner:
        def __init__(self) -> None:
            self._headers = {"X-Amz-Security-Token": SESSION_TOKEN}

    secret = Holder([Inner()])
    assert set(leaks([{"Body": secret}, *range(200)])) == {"session token"}
    captured = SSE_C_KEY

    def callback() -> bytes:
        return captured

    assert set(leaks([callback, *range(200)])) == {"SSE-C key"}
