"""s3fs specifics: a pooled aiobotocore session, one try per request, one request at a time.

- **Requests.** s3fs accepts an aiobotocore session (``session=``, its
  public constructor argument). :func:`pooled_session` makes one per pool
  with the botocore adapter installed, so every request s3fs makes is a pool
  task, running under the operation's slot when made inside one.
- **Retries.** s3fs retries on its own: ``_call_s3`` runs each request
  through ``_error_wrapper`` up to ``S3FileSystem.retries`` times (5), and
  ``_get_file`` re-reads a broken body as often. s3fs has no constructor
  argument for that count; it reads the attribute ``retries`` on every
  request. :class:`SingleTryS3FileSystem` is a subclass that sets it to 1
  (one try), so the pool's retries are the only ones. For an
  ``S3FileSystem`` you build yourself, set ``fs.retries = 1``.
- **Fan-out.** With ``max_concurrency`` above 1, s3fs splits one large
  transfer into concurrent range requests; inside an operation they would
  all run under its one slot. The pooled target defaults to
  ``max_concurrency=1`` so that the pool's limit is the number of requests
  in flight; pass it in the s3 options to allow more per operation.
"""

from __future__ import annotations

import os
import threading
import warnings
import weakref
from collections.abc import Mapping
from typing import Any

import s3fs
from aiobotocore.session import AioSession
from fsspec.spec import make_instance

from ...core.pool import OperationsPool
from ..botocore import install, installed_pool
from .cache import PoolKeyedCache
from .crossing import sync_method
from .pools import picklable_options, resolve_pool_option

S3_PROTOCOLS = ("s3", "s3a")
SESSION_OPTIONS = ("profile", "session_vars", "event_hooks", "include_builtin_handlers")
"""s3fs options it would pass to the ``AioSession`` it makes itself."""


class SingleTryS3FileSystem(s3fs.S3FileSystem, metaclass=PoolKeyedCache):  # type: ignore[misc]
    """An ``s3fs.S3FileSystem`` whose requests are tasks of a pool, each tried once: the pool owns retries.

    ``retries`` is s3fs's own retry count (a class attribute that s3fs reads
    on every request; it has no constructor argument). ``pool`` (an
    :class:`~s3pool_plugins.OperationsPool`, a mapping of pool options, or
    None for the pool of ``install_fsspec``, else ``default_pool()``): the
    requests go through a session of this filesystem's own, made as s3fs
    would make it (its ``profile`` ...) with the botocore adapter installed,
    new on ``connect(refresh=True)`` as s3fs's is; or through the caller's
    ``session``, installed with the pool if it is not pooled yet.
    ``max_concurrency`` defaults to 1, so that the pool's limit is the number
    of requests in flight. s3fs's own count of tries is kept where the pool
    takes a caller's retry setting (see :func:`s3fs_retry_config`). On a disabled pool it is plain s3fs, s3fs's own
    retries included. It pickles by its options, a pool object as its
    configuration. Everything else is s3fs's.
    """

    retries = 1
    session: Any

    def __init__(self, *args: Any, pool: OperationsPool | Mapping[str, Any] | None = None, **options: Any) -> None:
        resolved = resolve_pool_option(pool)
        self.pool = resolved
        given = options.get("session")
        own_session = given is None and resolved.enabled
        if resolved.enabled:
            options.setdefault("max_concurrency", 1)
            options["config_kwargs"] = s3fs_retry_config(resolved, options.get("config_kwargs"))
            if own_session:
                options["session"] = new_pooled_session(resolved, **session_options(options))
            elif installed_pool(given) is None:
                install(given, resolved)
        super().__init__(*args, **options)
        self._pooled_session = self.session if own_session else None
        if not resolved.enabled:
            self.retries = s3fs.S3FileSystem.retries

    async def set_session(self, refresh: bool = False, kwargs: Mapping[str, Any] | None = None) -> Any:
        """s3fs's ``set_session``; ``refresh=True`` also makes a new pooled session, as s3fs makes a new one."""
        if refresh and self._pooled_session is not None and self.session is self._pooled_session:
            self.session = self._pooled_session = new_pooled_session(self.pool, **session_options(self.kwargs))
        return await super().set_session(refresh=refresh, kwargs=dict(kwargs or {}))

    _connect = set_session
    connect = sync_method("connect")

    @classmethod
    def clear_instance_cache(cls) -> None:
        """fsspec's, and the instances made with a pool object (see :mod:`.cache`)."""
        super().clear_instance_cache()
        cls.clear_pool_instances()

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its options, as fsspec's filesystems; a pool object travels as its configuration."""
        return make_instance, (type(self), self.storage_args, picklable_options(self.storage_options))


class S3RetriesCompound(UserWarning):
    """An s3fs filesystem under the pool still retries on its own (``fs.retries > 1``)."""


_lock = threading.Lock()
_sessions: weakref.WeakKeyDictionary[OperationsPool, weakref.WeakValueDictionary[str, AioSession]] = (
    weakref.WeakKeyDictionary()
)
"""Both weak: a session references its pool (through its handlers), so a strong value would keep the pool
forever; keyed by the pool itself (not its id), so a dead pool's session never goes to a new pool."""
_made_here: weakref.WeakSet[AioSession] = weakref.WeakSet()


def pooled_session(pool: OperationsPool, **session_options: Any) -> AioSession:
    """The aiobotocore session of ``pool`` (one per pool and ``session_options``), with the pool installed.

    ``session_options`` go to ``AioSession`` (``profile=...``). Clients the
    session makes are pooled by the botocore adapter.
    """
    key = repr(sorted(session_options.items()))
    with _lock:
        per_pool = _sessions.setdefault(pool, weakref.WeakValueDictionary())
        session = per_pool.get(key)
        if session is None:
            session = AioSession(**session_options)
            install(session, pool)
            per_pool[key] = session
            _made_here.add(session)
        return session


def s3fs_retry_config(pool: OperationsPool, config_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """s3fs's ``config_kwargs``, with s3fs's own count of tries as its client's botocore retry setting.

    s3fs tries each request ``S3FileSystem.retries`` times (5); under the
    pool it tries once and the pool retries. Where the pool's ``retries``
    was not set and the caller gave no retry setting of their own
    (``config_kwargs["retries"]``, ``AWS_MAX_ATTEMPTS``), the client says
    ``total_max_attempts = S3FileSystem.retries``: the botocore adapter takes
    a client's retry setting for its requests when the pool's was not set,
    so a pooled s3fs request gets no fewer tries than s3fs would make.
    """
    config = dict(config_kwargs or {})
    if not pool.config.retries_chosen and "retries" not in config and "AWS_MAX_ATTEMPTS" not in os.environ:
        config["retries"] = {"total_max_attempts": s3fs.S3FileSystem.retries}
    return config


def session_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options of s3fs ``options`` that s3fs would give the ``AioSession`` it makes itself."""
    return {name: options[name] for name in SESSION_OPTIONS if name in options}


def new_pooled_session(pool: OperationsPool, **session_options: Any) -> AioSession:
    """A new aiobotocore session, installed with ``pool`` before it makes any client: one filesystem's own."""
    session = AioSession(**session_options)
    install(session, pool)
    _made_here.add(session)
    return session


def is_s3(fs: object) -> bool:
    """True for an s3fs filesystem."""
    return isinstance(fs, s3fs.S3FileSystem)


def requests_pool(fs: Any) -> OperationsPool | None:
    """The pool that ``fs``'s S3 requests are pooled with (through its session), if any."""
    session = getattr(fs, "session", None)
    return None if session is None else installed_pool(session)


def make_target(pool: OperationsPool, options: Mapping[str, Any]) -> Any:
    """The s3fs filesystem a pooled filesystem wraps, from s3fs ``options``.

    On an enabled pool: a :class:`SingleTryS3FileSystem` of ``pool``. On a
    disabled pool: a plain ``S3FileSystem``, its own retries included.
    """
    if not pool.enabled:
        return s3fs.S3FileSystem(**options)
    return SingleTryS3FileSystem(pool=pool, **options)


_warned: set[tuple[str, int]] = set()


def check_retries(fs: Any) -> None:
    """Warn if an s3fs filesystem given to the pool would retry on its own as well.

    Once per process for each filesystem class and retry count: the
    hundredth such filesystem says nothing new.
    """
    retries = getattr(fs, "retries", 1)
    if isinstance(retries, int) and retries > 1:
        key = (f"{type(fs).__module__}.{type(fs).__qualname__}", retries)
        with _lock:
            if key in _warned:
                return
            _warned.add(key)
        warnings.warn(
            S3RetriesCompound(
                f"this s3fs filesystem retries each request up to {retries} times on its own, on top of the pool's "
                f"retries; set fs.retries = 1 (s3fs has no constructor argument for it), or let the pooled "
                f"filesystem build its s3fs from target_options"
            ),
            stacklevel=4,
        )
