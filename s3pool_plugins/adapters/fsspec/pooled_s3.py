"""``PooledS3FileSystem``: s3fs's own filesystem class, each of its operations a pool task.

What :func:`~.install.install_fsspec` registers for ``s3://`` and
``s3a://``. It **is** an ``s3fs.S3FileSystem`` (a subclass, registered
through fsspec's public ``register_implementation``; nothing in s3fs is
replaced), so ``isinstance(fs, S3FileSystem)`` holds, and every method,
attribute and file is s3fs's own. The subclass adds three things:

- **operations**: each public operation that talks to S3 (:data:`OPERATIONS`)
  runs s3fs's own implementation as one pool task (see :mod:`.operations`);
  bulk methods (``cat``, ``get``, ``rm`` ...) are s3fs's, so they make one
  task per file or per ``DeleteObjects`` batch;
- **requests**: the filesystem has a session of its own with the
  botocore adapter installed, made like the session s3fs
  would make (its ``profile`` ...), new on ``connect(refresh=True)``, never
  shared with another filesystem; its requests run under the operation's
  slot, and files (s3fs's ``S3File``) are pooled per request;
- **one owner per retry**: s3fs's own retry loop is off (``retries = 1``);
  the pool retries, with at least as many retries as s3fs would have made
  unless the pool's ``retries`` was set explicitly (see :mod:`.retries`).

It pickles as any fsspec filesystem, by its options: an ``OperationsPool``
given as ``pool=`` travels as its configuration (see
:func:`~.pools.picklable_pool_options`), none as none, so an unpickled
filesystem binds to a pool of the process it lands in.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import s3fs
from fsspec.callbacks import DEFAULT_CALLBACK
from s3fs.core import S3File, _inner_fetch

from ...core.context import validate_priority
from ...core.pool import OperationsPool
from .crossing import add_sync_methods, call_sync, sync_method
from .operations import OperationRunner
from .ranged import BufferSink, RangedReader, S3Object, as_file_expired, cat_object, get_object
from .ranges import resolve_ranged_reads
from .s3 import SingleTryS3FileSystem

OPERATIONS: dict[str, str] = {
    "cat_file": "cat_file",
    "pipe_file": "pipe_file",
    "get_file": "get_file",
    "put_file": "put_file",
    "cp_file": "cp_file",
    "rm_file": "rm_file",
    "bulk_delete": "rm",
    "info": "info",
    "ls": "ls",
    "find": "find",
    "exists": "exists",
    "isdir": "isdir",
    "isfile": "isfile",
    "mkdir": "mkdir",
    "makedirs": "makedirs",
    "rmdir": "rmdir",
    "touch": "touch",
    "checksum": "checksum",
    "metadata": "metadata",
    "getxattr": "getxattr",
    "setxattr": "setxattr",
    "chmod": "chmod",
    "merge": "merge",
    "object_version_info": "object_version_info",
    "is_bucket_versioned": "is_bucket_versioned",
    "make_bucket_versioned": "make_bucket_versioned",
    "list_multipart_uploads": "list_multipart_uploads",
    "abort_mpu": "abort_mpu",
    "clear_multipart_uploads": "clear_multipart_uploads",
    "get_delegated_s3pars": "get_delegated_s3pars",
}
"""s3fs coroutine methods (without their ``_``) run as one pool task each, and the task's name (``fsspec.<name>``).

Everything else is s3fs's as is: bulk and composite methods call these, so
each file or batch they touch is one task; methods that make no request
(``split_path``, ``url``, ``invalidate_cache``) make no task."""


def _pooled(name: str, task_name: str) -> Callable[..., Awaitable[Any]]:
    """``_<name>`` of this class: s3fs's ``_<name>`` run as the operation ``task_name``."""
    implementation = getattr(s3fs.S3FileSystem, f"_{name}")

    async def method(self: PooledS3FileSystem, *args: Any, **kwargs: Any) -> Any:
        attempt = functools.partial(implementation, self, *args, **kwargs)
        path = args[0] if args else kwargs.get("path", kwargs.get("rpath"))
        first = path[0] if isinstance(path, list) and path else path
        return await self._runner.run(task_name, attempt, path=first, callback=kwargs.get("callback"))

    method.__name__ = method.__qualname__ = f"_{name}"
    method.__doc__ = implementation.__doc__
    return method


class PooledS3FileSystem(SingleTryS3FileSystem):
    """An ``s3fs.S3FileSystem`` whose operations and requests are pool tasks (see the module docstring).

    Takes every s3fs option, plus ``pool`` (an
    :class:`~s3pool_plugins.OperationsPool`, or a mapping of pool options
    for a pool shared by every filesystem made with the same ones; default:
    the pool of ``install_fsspec``, else ``default_pool()``) and
    ``priority`` (the fallback priority of its operations; a priority
    scope wins) and ``ranged_reads`` (True by default: reads longer than
    one part go in parallel parts, see :mod:`.ranged`; False, a mapping of
    :class:`~.ranges.RangedReads` fields, or one). A bad option raises
    ``ConfigurationError`` naming it. Its requests and session are those
    of :class:`~.s3.SingleTryS3FileSystem`. On a disabled pool it is plain
    s3fs, s3fs's own retries included.
    """

    mirror_sync_methods = False  # made once for the class below, crossing the caller's context

    def __init__(
        self,
        *args: Any,
        pool: OperationsPool | Mapping[str, Any] | None = None,
        priority: float | None = None,
        ranged_reads: object = True,
        **options: Any,
    ) -> None:
        if priority is not None:
            priority = validate_priority(priority)
        settings = resolve_ranged_reads(ranged_reads)
        super().__init__(*args, pool=pool, **options)
        self.priority = priority
        enabled = self.pool.enabled
        self._runner = OperationRunner(self.pool, priority=priority, requests_pool=self.pool if enabled else None)
        self._ranged = RangedReader(self._runner, settings) if settings is not None and enabled else None

    def _open(self, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        """s3fs's file; read, its range requests are operations (:class:`PooledS3File`)."""
        return pool_reads(super()._open(path, mode, *args, **kwargs), self._runner, self, self._ranged)

    _one_cat_file = _pooled("cat_file", "cat_file")
    _one_get_file = _pooled("get_file", "get_file")

    async def _cat_file(
        self, path: str, version_id: str | None = None, start: Any = None, end: Any = None, **kwargs: Any
    ) -> Any:
        """s3fs's ``cat_file``: in parallel parts when it reads more than one part (see :mod:`.ranged`),
        else one operation. s3fs's own fan-out options (``chunksize``, ``max_concurrency``) keep s3fs's way."""
        reader = self._ranged
        if reader is not None and not kwargs and reader.takes_cat(start, end):
            return await cat_object(reader, self, path, version_id, start, end)
        return await self._one_cat_file(path, version_id=version_id, start=start, end=end, **kwargs)

    async def _get_file(
        self, rpath: str, lpath: str, callback: Any = DEFAULT_CALLBACK, version_id: str | None = None, **kwargs: Any
    ) -> Any:
        """s3fs's ``get_file``: in parallel parts, each written at its offset, when the object is larger
        than one part (see :mod:`.ranged`), else one operation."""
        reader = self._ranged
        if reader is not None and not kwargs and reader.takes_whole():
            return await get_object(reader, self, rpath, lpath, version_id, callback)
        return await self._one_get_file(rpath, lpath, callback=callback, version_id=version_id, **kwargs)


def pool_reads(file: Any, runner: OperationRunner, s3: Any, reader: RangedReader | None = None) -> Any:
    """``file`` (an s3fs ``S3File``), reading each range as an operation of ``runner`` if opened for reading.

    ``s3`` is the s3fs filesystem that makes the range requests (the
    file's own ``fs``, or the one a pooled wrapper wraps); ``reader``, if
    given, reads ranges longer than one part in parallel parts.

    The file stays the one s3fs's ``_open`` made, so every option means
    what it means there; it becomes a :class:`PooledS3File`, whose cache is
    given its ``_fetch_range``.
    """
    if type(file) is S3File and "r" in file.mode:
        file.__class__ = PooledS3File
        file.pooled_reads = (runner, s3, reader)
        file.cache.fetcher = file._fetch_range
    return file


_FETCH_TAKES_DETAILS = "details" in inspect.signature(_inner_fetch).parameters
"""s3fs releases before ``local_expiry_check`` fetch a range without the file's details."""


class PooledS3File(S3File):  # type: ignore[misc]
    """s3fs's ``S3File``, each range it reads one operation of the pool, body included (see :func:`pool_reads`).

    Everything else is s3fs's: the version or ETag it pins, ``url``,
    ``metadata``, ``getxattr``, ``setxattr``, its errors.
    """

    pooled_reads: tuple[OperationRunner, Any, RangedReader | None]
    """The runner that makes the reads operations, the s3fs filesystem whose requests they are, and the
    reader of large ranges (None: one operation per range)."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        if start == end:
            return b""
        runner, s3, reader = self.pooled_reads
        if reader is not None and reader.takes_range(start, end):  # this thread's context: is it in a slot?
            return self._fetch_parts(reader, s3, start, end)
        extra = {"details": self.details} if _FETCH_TAKES_DETAILS else {}
        attempt = functools.partial(
            _inner_fetch, s3, self.bucket, self.key, self.version_id, start, end, self.read_kw, **extra
        )
        try:
            data: bytes = call_sync(s3.loop, runner.run, "cat_file", attempt, path=self.path)
        except OSError as error:  # as S3File: a failed If-Match is the object changing under the reader
            expired = as_file_expired(error, self.details["name"], self.details.get("ETag"))
            if expired is error:
                raise
            raise expired from error
        return data

    def _fetch_parts(self, reader: RangedReader, s3: Any, start: int, end: int) -> bytes:
        """The bytes ``[start, end)`` in parallel parts, pinned as this file's other reads."""
        local_check = bool(getattr(s3, "local_expiry_check", False))
        etag = self.read_kw.get("IfMatch") or (self.details.get("ETag") if local_check else None)
        target = S3Object(s3, self.bucket, self.key, self.path, self.version_id, dict(self.read_kw), etag)
        sink = BufferSink()
        call_sync(s3.loop, reader.read, "cat_file", target, sink, start, end)
        return sink.result()


for _name, _task in OPERATIONS.items():
    if f"_{_name}" not in vars(PooledS3FileSystem):  # _cat_file, _get_file: their own, around the pooled one
        setattr(PooledS3FileSystem, f"_{_name}", _pooled(_name, _task))
    if _name in vars(s3fs.S3FileSystem):  # s3fs's own sync wrapper would call s3fs's coroutine, not this one
        setattr(PooledS3FileSystem, _name, sync_method(_name))
add_sync_methods(PooledS3FileSystem)
