"""Parallel ranged reads of large S3 objects: each part one pool operation, reassembled in order, one ETag.

s3fs reads an object over one stream. A read longer than one part (see
:mod:`.ranges`) is made here of part-aligned range requests instead, each
one operation of the pool (its own slot, its own retries), so the pool's
limit, adaptive or not, decides how many run at once:

- the **first request** is the one s3fs would make (a plain ``GetObject``
  for a whole object, the first part's range for a range): an object of at
  most one part is read from it to the end, one request as before, with no
  ``HEAD``; for a larger one, its headers give the length and the ETag, the
  other parts start at once, and the first stream reads only the first part;
- **one version**: every part is read from the ETag of the first response
  (or of the file that opened): sent as ``If-Match`` (compared locally when
  s3fs's ``local_expiry_check`` is on), and the ETag of every response is
  compared too, so an object overwritten mid-read raises s3fs's
  ``FileExpired`` and is never spliced; a ``version_id`` is sent with every
  part;
- **retries per part**: a 503 or a reset is retried by the pool for that
  request, a body that breaks off is retried for that part alone (its
  progress taken back first);
- **bounded**: at most ``max_parts`` parts of one read are under way
  (queued or running), each writing its body to its place in the
  destination as it arrives, so a read holds at most ``max_parts`` chunks of
  :data:`CHUNK` bytes beyond its destination;
- **nested reads stay one stream**: a read made while the context already
  holds a slot of the pool (inside a pool task) would run every part under
  that one slot, so it is made as before, one operation.

The first error of any part cancels the others (their slots come back) and
is raised; so is a cancellation of the read.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from s3fs.core import version_id_kw
from s3fs.utils import FileExpired

from ...core.context import holds_slot
from .operations import OperationRunner
from .ranges import RangedReads, part_ranges

CHUNK = 1024 * 1024
"""Most bytes read from one response body at a time."""


class Sink(Protocol):
    """Where the parts of one read go: offsets count from the start of the read."""

    prefers_whole: bool
    """True if a read of one stream is best taken as one ``bytes`` (no chunking)."""

    def open(self, length: int) -> None:
        """The read is ``length`` bytes long; called once, before any write."""

    def write(self, offset: int, data: bytes) -> None:
        """Put ``data`` at ``offset``; a retried part writes its bytes again at the same offsets."""


class BufferSink:
    """The destination of ``cat_file`` and of a file's range: the bytes in memory."""

    prefers_whole = True

    def __init__(self) -> None:
        self._length = 0
        self._buffer: bytearray | None = None
        self._whole: bytes | None = None

    def open(self, length: int) -> None:
        self._length = length

    def write(self, offset: int, data: bytes) -> None:
        if self._buffer is None:
            if offset == 0 and len(data) == self._length:
                self._whole = data
                return
            self._buffer = bytearray(self._length)
        self._buffer[offset : offset + len(data)] = data

    def result(self) -> bytes:
        """The bytes read."""
        if self._whole is not None:
            return self._whole
        return bytes(self._buffer) if self._buffer is not None else b""


class FileSink:
    """The destination of ``get_file``: a local file, made when the first response came (so a failed read
    of a missing object leaves no file, as with s3fs), each part written at its offset."""

    prefers_whole = False

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: BinaryIO | None = None

    def open(self, length: int) -> None:
        self._file = open(self._path, "wb")  # noqa: SIM115 - closed by close()
        self._file.truncate(length)

    def write(self, offset: int, data: bytes) -> None:
        assert self._file is not None
        self._file.seek(offset)
        self._file.write(data)

    def close(self) -> None:
        """Close the file, if it was made."""
        if self._file is not None:
            self._file.close()

    def discard(self) -> None:
        """Close and remove the file, if it was made: after a failed read it has the object's size with
        holes of zeros where parts never came, and a file of the right size must mean the right bytes."""
        if self._file is None:
            return
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
        self._file = None


@dataclass(frozen=True)
class S3Object:
    """The object a read reads: its s3fs filesystem (which makes the requests), bucket, key and pins.

    ``request`` holds extra ``GetObject`` parameters (a file's
    ``RequestPayer`` and ``IfMatch``); ``etag`` an ETag already pinned (a
    file's), else the first response's is.
    """

    s3: Any
    bucket: str
    key: str
    name: str
    version_id: str | None = None
    request: Mapping[str, Any] = field(default_factory=dict)
    etag: str | None = None


class RangedReader:
    """Reads large objects of a pooled filesystem in parallel parts (see the module docstring).

    ``runner`` makes each part an operation of its pool; ``settings`` are
    the ``ranged_reads`` option's.
    """

    __slots__ = ("runner", "settings")

    def __init__(self, runner: OperationRunner, settings: RangedReads) -> None:
        self.runner = runner
        self.settings = settings

    def takes_whole(self) -> bool:
        """True if a whole-object read goes through here now: not nested in a slot of the pool."""
        return self.runner.pool.enabled and not holds_slot(self.runner.pool)

    def takes_range(self, start: object, end: object) -> bool:
        """True if the bytes ``[start, end)`` are read here now: known offsets, more than one part, not nested."""
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end):
            return False
        return self.settings.splits(end - start) and self.takes_whole()

    def takes_cat(self, start: object, end: object) -> bool:
        """True if a ``cat_file`` of ``[start, end)`` is read here now (None and None: the whole object)."""
        if start is None and end is None:
            return self.takes_whole()
        return self.takes_range(start, end)

    async def read(
        self,
        operation: str,
        target: S3Object,
        sink: Sink,
        start: int = 0,
        end: int | None = None,
        callback: Any = None,
    ) -> None:
        """Read the bytes ``[start, end)`` of ``target`` into ``sink``; ``end=None``: the whole object.

        Each part is an operation named ``operation``; ``callback`` (an
        fsspec callback) gets the size, then each chunk written. Raises
        ``FileExpired`` if the object changes during the read, else what
        the first failing part raised.
        """
        if end is None and start != 0:
            raise ValueError(f"a read to the end of the object starts at 0, not {start}")
        await _Read(self, operation, target, sink, start, end, callback).run()


class _Read:
    """One read in progress: its pinned ETag, its length once known, its parts."""

    def __init__(
        self,
        reader: RangedReader,
        operation: str,
        target: S3Object,
        sink: Sink,
        start: int,
        end: int | None,
        callback: Any,
    ) -> None:
        self.runner = reader.runner
        self.settings = reader.settings
        self.operation = operation
        self.target = target
        self.sink = sink
        self.start = start
        self.end = end
        self.callback = callback
        self.etag = target.etag
        self.local_check = bool(getattr(target.s3, "local_expiry_check", False))
        self.read_end = 0
        self.first_end = 0
        self.planned: asyncio.Future[None] | None = None

    async def run(self) -> None:
        self.planned = asyncio.get_running_loop().create_future()
        first = asyncio.ensure_future(self.runner.run(self.operation, self._first_attempt, path=self.target.name))
        try:
            await asyncio.wait({first, self.planned}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await _cancel({first})
            raise
        if not self.planned.done():
            first.result()  # it failed before its response came: raise that
        parts = iter(part_ranges(self.first_end, self.read_end, self.settings.part_size))
        await self._run_parts({first}, parts)

    async def _run_parts(self, running: set[asyncio.Future[Any]], parts: Any) -> None:
        try:
            while True:
                while len(running) < self.settings.max_parts:
                    part = next(parts, None)
                    if part is None:
                        break
                    running.add(asyncio.ensure_future(self._part(*part)))
                if not running:
                    return
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        except BaseException:
            await _cancel(running)
            raise

    def _part(self, start: int, end: int) -> Any:
        async def attempt() -> None:
            response = await self._get(start, end)
            await self._stream(response, start, end)

        return self.runner.run(self.operation, attempt, path=self.target.name)

    async def _first_attempt(self) -> None:
        assert self.planned is not None
        if self.planned.done():  # a retry: the plan is known, this is a part like the others
            response = await self._get(self.start, self.first_end)
            await self._stream(response, self.start, self.first_end)
            return
        if self.end is None:
            response = await self._get(self.start, None)
        else:
            response = await self._get(self.start, min(self.end, _boundary(self.start, self.settings.part_size)))
        try:
            self._plan(response)
        except BaseException:
            response["Body"].close()
            raise
        self.planned.set_result(None)
        await self._stream(response, self.start, self.first_end)

    def _plan(self, response: Mapping[str, Any]) -> None:
        """Pin the ETag and learn the read's length from the first response."""
        self._check_etag(response)
        part_size = self.settings.part_size
        content_range = response.get("ContentRange")
        if self.end is None and not content_range:
            self.read_end = int(response["ContentLength"])
            self.first_end = self.read_end if not self.settings.splits(self.read_end) else part_size
        else:
            total = _total_of(content_range, self.target.name)
            self.read_end = total if self.end is None else min(self.end, total)
            self.first_end = min(self.read_end, _boundary(self.start, part_size))
        self.sink.open(self.read_end - self.start)
        if self.callback is not None:
            self.callback.set_size(self.read_end - self.start)

    async def _get(self, start: int, end: int | None) -> Any:
        """``GetObject`` of ``[start, end)`` (``end=None``: no range), pinned to the read's version and ETag."""
        target = self.target
        params = dict(target.request)
        if end is not None:
            params["Range"] = f"bytes={start}-{end - 1}"
        if self.etag is not None and not self.local_check:
            params.setdefault("IfMatch", self.etag)
        try:
            response = await target.s3._call_s3(
                "get_object", Bucket=target.bucket, Key=target.key, **version_id_kw(target.version_id), **params
            )
        except OSError as error:
            expired = as_file_expired(error, target.name, self.etag)
            if expired is error:
                raise
            raise expired from error
        try:
            self._check_etag(response)
        except BaseException:
            response["Body"].close()
            raise
        return response

    def _check_etag(self, response: Mapping[str, Any]) -> None:
        etag = response.get("ETag")
        if self.etag is None:
            self.etag = etag
        elif etag is not None and etag != self.etag:
            raise FileExpired(filename=self.target.name, e_tag=self.etag)

    async def _stream(self, response: Mapping[str, Any], start: int, end: int) -> None:
        """Write the body of ``response``, the bytes ``[start, end)``, to the sink; then close the body.

        A body shorter than that raises ``http.client.IncompleteRead`` (a
        stream error: the part is retried); the progress it reported is
        taken back first.
        """
        body = response["Body"]
        base = self.start
        written = 0
        try:
            if (
                self.sink.prefers_whole
                and start == self.start
                and end == self.read_end
                and not _more_after(response, end - start)
            ):
                data = await body.read()
                if len(data) != end - start:
                    raise http.client.IncompleteRead(b"", end - start - len(data))
                self.sink.write(0, data)
                written = len(data)
                self._progress(written)
                return
            position = start
            while position < end:
                chunk = await body.read(min(CHUNK, end - position))
                if not chunk:
                    raise http.client.IncompleteRead(b"", end - position)
                self.sink.write(position - base, chunk)
                position += len(chunk)
                written += len(chunk)
                self._progress(len(chunk))
        except BaseException:
            if written:
                self._progress(-written)
            raise
        finally:
            body.close()

    def _progress(self, count: int) -> None:
        if self.callback is not None:
            self.callback.relative_update(count)


def _more_after(response: Mapping[str, Any], wanted: int) -> bool:
    """True if the body holds more than the ``wanted`` bytes (a whole-object stream cut after its first part)."""
    length = response.get("ContentLength")
    return isinstance(length, int) and length > wanted


def _boundary(position: int, part_size: int) -> int:
    """The first multiple of ``part_size`` after ``position``."""
    return (position // part_size + 1) * part_size


def _total_of(content_range: object, name: str) -> int:
    """The object's length from a ``Content-Range`` (``bytes 0-99/1234``)."""
    if isinstance(content_range, str) and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    raise OSError(errno.EIO, f"the response for {name} has no usable Content-Range ({content_range!r})")


def as_file_expired(error: OSError, name: str, etag: str | None) -> OSError:
    """s3fs's ``FileExpired`` for a failed ``If-Match`` (S3's 412, as s3fs translates it), else ``error``."""
    if error.args and error.args[0] == errno.EINVAL and "pre-conditions" in str(error.args[1:]):
        expired: OSError = FileExpired(filename=name, e_tag=etag)
        return expired
    return error


async def _cancel(tasks: set[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until each has ended (so their slots are back)."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()  # retrieved: the caller raises its own error


async def cat_object(reader: RangedReader, s3: Any, path: str, version_id: str | None, start: Any, end: Any) -> bytes:
    """``cat_file`` of s3fs filesystem ``s3`` in parts: the whole object (``start`` and ``end`` None) or
    ``[start, end)``; the caller checked that the reader takes it."""
    bucket, key, path_version = s3.split_path(path)
    target = S3Object(s3, bucket, key, name=path, version_id=version_id or path_version)
    sink = BufferSink()
    await reader.read("cat_file", target, sink, start or 0, end)
    return sink.result()


async def get_object(
    reader: RangedReader, s3: Any, rpath: str, lpath: str, version_id: str | None, callback: Any
) -> None:
    """``get_file`` of s3fs filesystem ``s3`` in parts (nothing when ``lpath`` is a directory, as s3fs)."""
    if os.path.isdir(lpath):  # noqa: ASYNC240 - as s3fs's get_file, one stat on the loop
        return
    bucket, key, path_version = s3.split_path(rpath)
    target = S3Object(s3, bucket, key, name=rpath, version_id=version_id or path_version)
    sink = FileSink(lpath)
    try:
        await reader.read("get_file", target, sink, callback=callback)
    except BaseException:
        sink.discard()
        raise
    sink.close()
