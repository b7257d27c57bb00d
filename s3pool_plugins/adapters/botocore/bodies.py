"""Streamed results that keep their call's slot until they are consumed.

A ``GetObject`` call returns while its body is still on the wire: the
request's cost (a connection, the server's bandwidth) goes on until the body
is read. The call's slot therefore stays taken (a
:class:`~s3pool_plugins.core.calls.SlotLease`) until the body is read to its
end, closed, raises while being read, or is garbage-collected; a body nobody
touches for the idle bound gives its slot back by itself.

Nothing of botocore is replaced: the adapter puts a proxy in the result dict
it hands back (the call's own result), in place of the streamed member the
operation's model names (``Body``, ``Payload``). The proxy reads through the
original object and behaves like it; anything it does not define is the
original's (``set_socket_timeout``, ``tell``, ``_raw_stream`` ...). What it
cannot see (a caller reading ``_raw_stream`` itself) still ends with
``close()``, the collector or the idle bound.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ...core.context import SlotHolder
from ...core.leases import SlotLease

CHUNK_SIZE = 1024
"""The chunk size of plain iteration, as botocore's and aiobotocore's bodies use."""

BODY_IDLE_TIMEOUT = 60.0
"""Seconds a streamed body may go untouched before its slot goes back: botocore's default read timeout."""


_thread_flow = threading.local()
"""``.leases``: weak references to the open leases of bodies got by this thread (outside asyncio tasks)."""
_task_flows: weakref.WeakKeyDictionary[asyncio.Task[Any], list[weakref.ref[SlotLease]]] = weakref.WeakKeyDictionary()
"""The same, per asyncio task."""


def _flow_leases(create: bool) -> list[weakref.ref[SlotLease]] | None:
    """The lease list of this flow of control: the running asyncio task's, else this thread's."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        task = None
    if task is not None:
        found = _task_flows.get(task)
        if found is None and create:
            found = _task_flows[task] = []
        return found
    found = getattr(_thread_flow, "leases", None)
    if found is None and create:
        found = _thread_flow.leases = []
    return found


def share_in_flow(lease: SlotLease) -> None:
    """Let calls this thread (or asyncio task) makes while ``lease`` is open run under its slot.

    Only this flow of control: not threads, tasks or pool work started from it
    (they inherit its context, not its flow), so they cannot fan out under the
    one slot of a body they do not read.
    """
    leases = _flow_leases(create=True)
    assert leases is not None
    leases[:] = [ref for ref in leases if (kept := ref()) is not None and not kept.released]
    leases.append(weakref.ref(lease))


def flow_body_slot(pool: object) -> SlotHolder | None:
    """The slot of ``pool`` that an open body of this flow of control keeps, if any."""
    leases = _flow_leases(create=False)
    if not leases:
        return None
    for ref in leases:
        lease = ref()
        holder = None if lease is None else lease.holder
        if holder is not None and holder.pool is pool:
            return holder
    return None


def streamed_member(model: Any) -> tuple[str, bool] | None:
    """(name of the streamed member, True if it is an event stream) of an operation's output, or None.

    ``model`` is a botocore ``OperationModel``; its output's payload member is
    the one that streams (a blob body or an event stream).
    """
    events = bool(model.has_event_stream_output)
    if not (events or model.has_streaming_output):
        return None
    payload = model.output_shape.serialization.get("payload")
    return (payload, events) if isinstance(payload, str) else None


def cover(value: Any, lease: SlotLease, events: bool, length: object, release_later: Callable[[Any], object]) -> Any:
    """A proxy of the streamed ``value`` that releases ``lease`` when it is consumed.

    ``length``: the result's ``ContentLength`` (the body ends when that many
    bytes were read); ``release_later(lease)``: how a finalizer releases
    (on another thread: it must not take the pool's locks itself).
    """
    is_async = hasattr(value, "__aiter__")
    if events:
        kind: type[_Covered] = AsyncCoveredEventStream if is_async else CoveredEventStream
    else:
        kind = AsyncCoveredBody if is_async else CoveredBody
    known = length if isinstance(length, int) and not isinstance(length, bool) and length >= 0 else None
    if known == 0 and not events:
        lease.release()  # an empty body has nothing left to stream
    return kind(value, lease, known, release_later)


class _Covered:
    """What every proxy shares: the original, its lease, the bytes read and the end of the lease."""

    __slots__ = ("_length", "_lease", "_read", "_release_later", "_wrapped")

    def __init__(self, wrapped: Any, lease: SlotLease, length: int | None, release_later: Callable[[Any], object]):
        self._wrapped = wrapped
        self._lease = lease
        self._length = length
        self._read = 0
        self._release_later = release_later

    def __getattr__(self, name: str) -> Any:
        if name in _Covered.__slots__:  # not set (yet): never look them up on the original
            raise AttributeError(name)
        return getattr(self._wrapped, name)

    @property
    def slot_released(self) -> bool:
        """True once this result gave its slot back."""
        return self._lease.released

    def _got(self, count: int, ended: bool) -> None:
        """``count`` bytes came; ``ended``: the read saw the end of the stream."""
        read = self._read = self._read + count
        length = self._length
        if ended or (length is not None and read >= length):
            self._lease.release()
        elif count:
            self._lease.touch()

    def _end(self) -> None:
        self._lease.release()

    def __del__(self) -> None:
        lease = getattr(self, "_lease", None)  # None: the proxy was never fully made
        if lease is not None and not lease.released:
            self._release_later(lease)

    def __repr__(self) -> str:
        state = "slot released" if self._lease.released else "holding its slot"
        return f"<{type(self).__name__} of {self._wrapped!r}, {state}>"


class CoveredBody(_Covered):
    """A botocore ``StreamingBody`` (urllib3) that holds its call's slot until consumed."""

    __slots__ = ()

    def read(self, amt: int | None = None) -> bytes:
        """Read as the body does; the slot goes back at the end of the stream or on an error."""
        try:
            data: bytes = self._wrapped.read(amt)
        except BaseException:
            self._end()
            raise
        self._got(len(data), amt is None or amt < 0 or (not data and amt > 0))
        return data

    def readinto(self, b: Any) -> int:
        """Read into ``b`` as the body does (see :meth:`read`)."""
        try:
            count: int = self._wrapped.readinto(b)
        except BaseException:
            self._end()
            raise
        self._got(count, count == 0 and len(b) > 0)
        return count

    def readline(self, size: int | None = -1) -> bytes:
        """One line (up to ``size`` bytes), as the body's own ``readline`` (``io.IOBase``'s).

        Read a byte at a time, as the original does (its ``readline`` calls
        its own ``read(1)``, which this proxy would not see): the end of the
        stream gives the slot back and every byte counts as activity.
        """
        limit = -1 if size is None else size.__index__()
        line = bytearray()
        while limit < 0 or len(line) < limit:
            byte = self.read(1)
            if not byte:
                break
            line += byte
            if byte == b"\n":
                break
        return bytes(line)

    def readlines(self) -> list[bytes]:
        """Every line left, ends kept, as botocore's ``readlines`` (one :meth:`read` to the end)."""
        return self.read().splitlines(True)

    def __iter__(self) -> Iterator[bytes]:
        return self.iter_chunks(CHUNK_SIZE)

    def __next__(self) -> bytes:
        chunk = self.read(CHUNK_SIZE)
        if chunk:
            return chunk
        raise StopIteration()

    next = __next__

    def iter_chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """Chunks of ``chunk_size`` bytes until the end, as botocore's ``iter_chunks``."""
        while True:
            chunk = self.read(chunk_size)
            if chunk == b"":
                break
            yield chunk

    def iter_lines(self, chunk_size: int = CHUNK_SIZE, keepends: bool = False) -> Iterator[bytes]:
        """Lines of the body, as botocore's ``iter_lines``."""
        pending = b""
        for chunk in self.iter_chunks(chunk_size):
            lines = (pending + chunk).splitlines(True)
            for line in lines[:-1]:
                yield line.splitlines(keepends)[0]
            pending = lines[-1]
        if pending:
            yield pending.splitlines(keepends)[0]

    def close(self) -> None:
        """Close the body; its slot goes back."""
        try:
            self._wrapped.close()
        finally:
            self._end()

    def __enter__(self) -> CoveredBody:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncCoveredBody(_Covered):
    """An aiobotocore ``StreamingBody`` (aiohttp or httpx) that holds its call's slot until consumed."""

    __slots__ = ()

    async def read(self, amt: int | None = None) -> bytes:
        """Read as the body does; the slot goes back at the end of the stream or on an error."""
        try:
            data: bytes = await self._wrapped.read(amt)
        except BaseException:
            self._end()
            raise
        self._got(len(data), amt is None or amt < 0 or (not data and amt > 0))
        return data

    async def readinto(self, b: Any) -> int:
        """Read into ``b`` as the body does (see :meth:`read`)."""
        try:
            count: int = await self._wrapped.readinto(b)
        except BaseException:
            self._end()
            raise
        self._got(count, count == 0 and len(b) > 0)
        return count

    async def readlines(self) -> list[bytes]:
        """Every line left, ends dropped, as aiobotocore's ``readlines`` (through :meth:`iter_lines`)."""
        return [line async for line in self.iter_lines()]

    def readline(self, size: int | None = -1) -> bytes:
        """Refused, without touching the body: an async body has no ``readline``.

        The original inherits ``io.IOBase``'s synchronous one, which calls its
        coroutine ``read`` and fails; this says what to use instead.
        """
        raise TypeError(
            f"{type(self._wrapped).__name__} is async and has no readline(); use 'async for line in body.iter_lines()'"
        )

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.iter_chunks(CHUNK_SIZE)

    async def __anext__(self) -> bytes:
        chunk = await self.read(CHUNK_SIZE)
        if chunk:
            return chunk
        raise StopAsyncIteration

    anext = __anext__

    async def iter_chunks(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Chunks of ``chunk_size`` bytes until the end, as aiobotocore's ``iter_chunks``."""
        while True:
            chunk = await self.read(chunk_size)
            if chunk == b"":
                break
            yield chunk

    async def iter_lines(self, chunk_size: int = CHUNK_SIZE, keepends: bool = False) -> AsyncIterator[bytes]:
        """Lines of the body, as aiobotocore's ``iter_lines``."""
        pending = b""
        async for chunk in self.iter_chunks(chunk_size):
            lines = (pending + chunk).splitlines(True)
            for line in lines[:-1]:
                yield line.splitlines(keepends)[0]
            pending = lines[-1]
        if pending:
            yield pending.splitlines(keepends)[0]

    def close(self) -> Any:
        """Close the body as it does (aiohttp's closes now, httpx's returns an awaitable); its slot goes back."""
        try:
            return self._wrapped.close()
        finally:
            self._end()

    async def aclose(self) -> None:
        """Close the body; its slot goes back."""
        try:
            closing = getattr(self._wrapped, "aclose", None)
            result = closing() if closing is not None else self._wrapped.close()
            if inspect.isawaitable(result):
                await result
        finally:
            self._end()

    async def __aenter__(self) -> AsyncCoveredBody:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class CoveredEventStream(_Covered):
    """A botocore ``EventStream`` (``SelectObjectContent``'s ``Payload``) that holds its call's slot until
    its events are all read, it is closed, an event raises, or it is collected."""

    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        try:
            for event in self._wrapped:
                self._lease.touch()
                yield event
        except GeneratorExit:  # the caller stopped iterating: the stream may still be read or closed
            raise
        except BaseException:
            self._end()
            raise
        self._end()

    def close(self) -> None:
        """Close the stream; its slot goes back."""
        try:
            self._wrapped.close()
        finally:
            self._end()


class AsyncCoveredEventStream(_Covered):
    """:class:`CoveredEventStream` for aiobotocore's ``AioEventStream`` (``async for``)."""

    __slots__ = ()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._events()

    async def _events(self) -> AsyncIterator[Any]:
        try:
            async for event in self._wrapped:
                self._lease.touch()
                yield event
        except GeneratorExit:
            raise
        except BaseException:
            self._end()
            raise
        self._end()

    def close(self) -> None:
        """Close the stream; its slot goes back."""
        try:
            self._wrapped.close()
        finally:
            self._end()
