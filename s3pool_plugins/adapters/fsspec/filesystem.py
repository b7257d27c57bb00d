"""The pooled filesystem: any fsspec filesystem, each operation one pool task.

``PooledFileSystem`` (protocol ``pool``, registered through the
``fsspec.specs`` entry point) wraps a *target* filesystem and runs each of
its operations as a pool task that covers the whole operation, body
download or upload included (see :mod:`.operations`):

===========================  ==================================================
operation                    pool tasks
===========================  ==================================================
``cat_file``, ``pipe_file``  one each
``get_file``, ``put_file``   one each (the progress callback keeps working)
``cp_file``, ``rm_file``     one each
``info``, ``ls``, ``find``,  one each (a listing, all its pages)
``exists``, ``isdir``, ...
``open(..., "rb")``          one ``info`` when the file opens, then one per
                             range request (S3: s3fs's ``S3File``, see
                             :func:`~.pooled_s3.pool_reads`; others:
                             :class:`~.files.PooledReadFile`)
``cat``, ``get``, ``put``,   one per file (fsspec's bulk methods call the
``pipe``, ``copy``           per-file operations above)
``rm`` (bulk)                one per file, or one per S3 ``DeleteObjects``
                             batch of up to 1000 keys (:mod:`.deletes`)
===========================  ==================================================

Files opened for writing are the target's own (on S3, s3fs's); each of their upload
requests is a pool task of the botocore adapter (the request body is sent
within the request, so that slot covers the upload).

Chained URLs work: ``fsspec.open("pool::s3://bucket/key", pool={...},
s3={...})``, and so do pandas' ``storage_options={"pool": {...}, "s3":
{...}}``. Sync methods run through :func:`~.crossing.call_sync`, so the
caller's priority scope and held slots cross into fsspec's IO thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import types
from collections.abc import Awaitable, Callable
from typing import Any

import fsspec
from fsspec.asyn import AsyncFileSystem
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractFileSystem, make_instance

from ...core.context import validate_priority
from ...core.pool import OperationsPool
from .crossing import add_sync_methods, sync_method
from .deletes import RmItem, generic_rm_stages, s3_rm_stages
from .files import PooledReadFile
from .operations import OperationRunner
from .options import check_io, check_target
from .pools import picklable_options, resolve_pool
from .ranged import RangedReader, cat_object, get_object
from .ranges import resolve_ranged_reads
from .s3 import S3_PROTOCOLS, check_retries, is_s3, make_target, requests_pool

try:
    from fsspec.implementations.chained import ChainedFileSystem
except ImportError:  # an fsspec without the marker: pool:: URLs then lose their path, the rest works
    ChainedFileSystem = AbstractFileSystem

PROTOCOL = "pool"
DELETE_BATCH_SIZE = 128
"""Most delete operations of one ``rm`` stage started at once (each still waits for its own slot)."""


class PooledFileSystem(AsyncFileSystem, ChainedFileSystem):  # type: ignore[misc]
    """An fsspec filesystem that runs every operation of a target filesystem as a pool task.

    Build it with a filesystem to wrap (``fs=``) or with the target's
    protocol and options (``target_protocol="s3", target_options={...}``;
    this is what fsspec passes for ``pool::s3://...``). For S3 targets built
    here, the target is s3fs with a pooled aiobotocore session and one try
    per request (see :mod:`.s3`), so its requests run under the operations'
    slots and only the pool retries.

    Pool storage options: ``pool`` (an :class:`~s3pool_plugins.OperationsPool`),
    or any ``OperationsPool`` option (``concurrency=8``, ``retries=5`` ...)
    for a pool shared by every filesystem made with the same options, else
    the installed or default pool (see :mod:`.pools`); ``priority``, the
    fallback priority of this filesystem's operations (a priority scope
    wins); ``ranged_reads`` (S3 targets; True by default: reads longer than
    one part go in parallel parts, see :mod:`.ranged`; False, a mapping of
    :class:`~.ranges.RangedReads` fields, or one). A bad option raises
    ``ConfigurationError`` naming it.

    ``asynchronous=True`` gives the async API on the running loop; an async
    target must then be asynchronous too. Attributes the wrapper does not
    have (``fs.s3``, ``fs.split_path`` ...) are the target's, unpooled unless
    they make requests through the target's pooled session.
    """

    protocol: Any = PROTOCOL
    cachable = False
    mirror_sync_methods = False  # the sync methods below cross the caller's context (crossing.call_sync)

    def __init__(
        self,
        fs: Any = None,
        *,
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        fo: str | None = None,
        pool: OperationsPool | None = None,
        priority: float | None = None,
        asynchronous: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
        batch_size: int | None = None,
        ranged_reads: object = True,
        **pool_options: Any,
    ) -> None:
        fs, target_protocol, options = check_target(fs, target_protocol, target_options)
        check_io(asynchronous, loop, batch_size)
        settings = resolve_ranged_reads(ranged_reads)
        resolved = resolve_pool(pool, pool_options)
        if priority is not None:
            priority = validate_priority(priority)
        super().__init__(asynchronous=asynchronous, loop=loop, batch_size=batch_size)
        self.pool = resolved
        self.priority = priority
        given = fs is not None
        self.fs = fs if given else self._make_target(str(target_protocol), options, loop)
        self._target_async = bool(getattr(self.fs, "async_impl", False))
        if self._target_async and bool(self.fs.asynchronous) != bool(self.asynchronous):
            raise ValueError(
                "the pooled filesystem and its async target must both be sync or both be asynchronous "
                f"(asynchronous={self.asynchronous!r}, target's {self.fs.asynchronous!r})"
            )
        s3_target = is_s3(self.fs)
        if given and s3_target:
            check_retries(self.fs)
        self._runner = OperationRunner(
            resolved, priority=priority, requests_pool=requests_pool(self.fs) if s3_target else None
        )
        self._s3_target = s3_target
        ranged = settings is not None and s3_target and resolved.enabled
        self._ranged = RangedReader(self._runner, settings) if ranged and settings is not None else None
        self._adopt_target_methods()
        # Paths are the target's: strip our protocol, then the target's (as fsspec's own wrappers do).
        self._strip_protocol = self._strip_target_protocol  # type: ignore[method-assign]
        self._parent = self.fs._parent
        self.root_marker = self.fs.root_marker
        self.sep = self.fs.sep

    def _make_target(self, protocol: str, options: dict[str, Any], loop: asyncio.AbstractEventLoop | None) -> Any:
        cls: Any = None if protocol in S3_PROTOCOLS else fsspec.get_filesystem_class(protocol)
        if cls is None or cls.async_impl:
            options.setdefault("asynchronous", self.asynchronous)
            if loop is not None:
                options.setdefault("loop", loop)
        if cls is None:
            return make_target(self.pool, options)
        return cls(**options)

    # -- paths --------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """Remove ``pool::`` or ``pool://`` in front of a path (or each path of a list)."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = fsspec.utils.stringify_path(path)
        for prefix in (f"{PROTOCOL}::", f"{PROTOCOL}://"):
            if path.startswith(prefix):
                path = path[len(prefix) :]
        return path

    def _strip_target_protocol(self, path: Any) -> Any:
        if isinstance(path, list):
            return [self._strip_target_protocol(p) for p in path]
        return self.fs._strip_protocol(type(self)._strip_protocol(path))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its options, as fsspec's filesystems; a pool object travels as its configuration."""
        return make_instance, (type(self), self.storage_args, picklable_options(self.storage_options))

    def unstrip_protocol(self, name: str) -> str:
        """The chained URL of ``name``: ``pool::s3://bucket/key``."""
        return f"{PROTOCOL}::{self.fs.unstrip_protocol(name)}"

    @property
    def fsid(self) -> str:
        """The target's ``fsid`` with a ``pool_`` prefix."""
        return f"pool_{self.fs.fsid}"

    def _adopt_target_methods(self) -> None:
        """Where the target overrides fsspec's generic method, use the target's (pooled if it is a coroutine).

        ``__getattr__`` reaches only names this class lacks; fsspec's base
        classes define many that a target gives its own meaning
        (s3fs's ``checksum``, ``modified``, ``open_async``, ``_glob`` ...).
        The listings cache is the target's too.
        """
        self.dircache = self.fs.dircache
        target = type(self.fs)
        for name in dir(target):
            if name.startswith("__") or not _generic_here(type(self), name) or _generic_here(target, name):
                continue
            if name.startswith("_"):
                if inspect.iscoroutinefunction(getattr(target, name)):  # _glob: one operation
                    setattr(self, name, functools.partial(self._target_operation, name[1:]))
            elif inspect.iscoroutinefunction(getattr(target, f"_{name}", None)):  # checksum: its coroutine, pooled
                if _generic_here(type(self), f"_{name}") or not hasattr(type(self), f"_{name}"):
                    setattr(self, f"_{name}", functools.partial(self._target_operation, name))
                setattr(self, name, types.MethodType(sync_method(name), self))
            else:  # modified, open_async: the target's own
                setattr(self, name, getattr(self.fs, name))

    async def _target_operation(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The target's ``_<method>`` as one operation (for the methods :meth:`_adopt_target_methods` adopts)."""
        return await self._op(method, args[0] if args else kwargs.get("path"), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or "fs" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["fs"], name)

    # -- running operations -------------------------------------------------

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The target's ``_<method>`` (async targets) or ``<method>`` in a worker thread (sync ones)."""
        target = self.fs
        if self._target_async:
            coroutine = getattr(target, f"_{method}", None)
            if coroutine is not None and inspect.iscoroutinefunction(coroutine):
                return await coroutine(*args, **kwargs)
        return await _in_thread(functools.partial(getattr(target, method), *args, **kwargs))

    def _op(
        self, method: str, path: object, *args: Any, _callback: Any = None, _name: str | None = None, **kwargs: Any
    ) -> Awaitable[Any]:
        """The target's ``method(*args, **kwargs)`` as one operation (named ``_name``, default ``method``)."""
        attempt = functools.partial(self._call, method, *args, **kwargs)
        return self._runner.run(_name or method, attempt, path=path, callback=_callback)

    # -- operations ---------------------------------------------------------

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> Any:
        reader = self._ranged
        if reader is not None and set(kwargs) <= {"version_id"} and reader.takes_cat(start, end):
            return await cat_object(reader, self.fs, path, kwargs.get("version_id"), start, end)
        return await self._op("cat_file", path, path, start=start, end=end, **kwargs)

    async def _pipe_file(self, path: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._op("pipe_file", path, path, value, *args, **kwargs)

    async def _get_file(self, rpath: str, lpath: str, callback: Any = DEFAULT_CALLBACK, **kwargs: Any) -> Any:
        reader = self._ranged
        if reader is not None and set(kwargs) <= {"version_id"} and reader.takes_whole():
            return await get_object(reader, self.fs, rpath, lpath, kwargs.get("version_id"), callback)
        return await self._op("get_file", rpath, rpath, lpath, callback=callback, _callback=callback, **kwargs)

    async def _put_file(self, lpath: str, rpath: str, callback: Any = DEFAULT_CALLBACK, **kwargs: Any) -> Any:
        return await self._op("put_file", rpath, lpath, rpath, callback=callback, _callback=callback, **kwargs)

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> Any:
        return await self._op("cp_file", path1, path1, path2, **kwargs)

    async def _rm_file(self, path: str, **kwargs: Any) -> Any:
        return await self._op("rm_file", path, path, **kwargs)

    async def _info(self, path: str, **kwargs: Any) -> Any:
        return await self._op("info", path, path, **kwargs)

    async def _ls(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return await self._op("ls", path, path, *args, **kwargs)

    async def _find(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return await self._op("find", path, path, *args, **kwargs)

    async def _exists(self, path: str, **kwargs: Any) -> Any:
        return await self._op("exists", path, path, **kwargs)

    async def _isdir(self, path: str) -> Any:
        return await self._op("isdir", path, path)

    async def _isfile(self, path: str) -> Any:
        return await self._op("isfile", path, path)

    async def _size(self, path: str) -> Any:
        return await self._op("size", path, path)

    async def _mkdir(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return await self._op("mkdir", path, path, *args, **kwargs)

    async def _makedirs(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return await self._op("makedirs", path, path, *args, **kwargs)

    async def _rmdir(self, path: str) -> Any:
        return await self._op("rmdir", path, path)

    async def _touch(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return await self._op("touch", path, path, *args, **kwargs)

    async def _rm(
        self,
        path: Any,
        recursive: bool = False,
        batch_size: int | None = None,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Delete ``path`` (a path, glob or list): one listing operation, then one per path or S3 batch."""
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        stages: list[list[RmItem]] = (
            s3_rm_stages(self.fs, paths, recursive)
            if self._s3_target
            else generic_rm_stages(paths, recursive, self.sep)
        )
        limit = batch_size or self.batch_size or DELETE_BATCH_SIZE
        deleted: list[Any] = []
        for stage in stages:
            results = await _gather_bounded(
                [self._delete_one(item, kwargs) for item in stage], limit=len(stage) if limit < 0 else limit
            )
            for result in results:
                if isinstance(result, list):
                    deleted += result
        return deleted

    def _delete_one(self, item: RmItem, kwargs: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        method, argument, keywords, missing_ok = item
        first = argument[0] if isinstance(argument, list) and argument else argument
        call = self._call_missing_ok if missing_ok else self._call
        attempt = functools.partial(call, method, argument, **keywords, **kwargs)
        return functools.partial(self._runner.run, "rm", attempt, path=first)

    async def _call_missing_ok(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._call(method, *args, **kwargs)
        except FileNotFoundError:
            return None

    # -- files --------------------------------------------------------------

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """S3: s3fs's own file, its range reads operations. Others: a :class:`~.files.PooledReadFile` to read,
        the target's own file to write.

        The S3 file is made by s3fs's ``_open`` for this filesystem (so its
        ``fs`` is this one: the ``info`` and ``exists`` it makes are pooled
        operations, the rest of what it asks of its filesystem reaches the
        target through ``__getattr__``).
        """
        if self._s3_target:
            from s3fs import S3FileSystem

            from .pooled_s3 import pool_reads

            file = S3FileSystem._open(
                self, path, mode, block_size=block_size, autocommit=autocommit, cache_options=cache_options, **kwargs
            )
            return pool_reads(file, self._runner, self.fs, self._ranged)
        if mode == "rb":
            kwargs.pop("fill_cache", None)
            return PooledReadFile(
                self,
                path,
                mode,
                block_size=block_size or getattr(self.fs, "default_block_size", None) or self.fs.blocksize,
                autocommit=autocommit,
                cache_type=kwargs.pop("cache_type", getattr(self.fs, "default_cache_type", "readahead")),
                cache_options=cache_options,
                size=kwargs.pop("size", None),
                **kwargs,
            )
        return self.fs.open(
            path, mode, block_size=block_size, autocommit=autocommit, cache_options=cache_options, **kwargs
        )

    # -- delegated as is ----------------------------------------------------

    async def set_session(self, *args: Any, **kwargs: Any) -> Any:
        """The target's ``set_session`` (s3fs: await it before using an asynchronous instance)."""
        return await self.fs.set_session(*args, **kwargs)

    def invalidate_cache(self, path: str | None = None) -> None:
        """Drop the target's listings cache (for ``path``, or all)."""
        self.fs.invalidate_cache(path)

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> Any:
        """The target's signed URL for ``path``."""
        return self.fs.sign(path, expiration=expiration, **kwargs)


def _generic_here(cls: type, name: str) -> bool:
    """True if ``cls.<name>`` is fsspec's generic ``AsyncFileSystem`` one (absent there: False)."""
    generic = getattr(AsyncFileSystem, name, None)
    return generic is not None and getattr(cls, name, None) is generic


async def _in_thread(fn: Callable[[], Any]) -> Any:
    """``asyncio.to_thread(fn)``, except that a cancellation waits until the thread is done.

    A thread cannot be stopped: the operation keeps its slot (and its caller
    waits, see :func:`~.crossing.call_sync`) until its work has really ended,
    so a cancelled write can neither overlap nor land after the next one.
    """
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(None, contextvars.copy_context().run, fn)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            try:
                await asyncio.wait({future})
            except asyncio.CancelledError:  # cancelled again: the thread still runs, so wait on
                continue
        if not future.cancelled():
            future.exception()  # retrieved: the caller gets the cancellation
        raise


async def _gather_bounded(factories: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    """Run coroutines, at most ``limit`` started at once; all end before the first error is raised."""
    semaphore = asyncio.Semaphore(max(1, limit))

    async def one(factory: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await factory()

    outcomes = await asyncio.gather(*(one(factory) for factory in factories), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


add_sync_methods(PooledFileSystem)
