"""``install`` / ``uninstall``: put a pool under boto3, botocore or aiobotocore.

Targets:

- a ``boto3.Session``, a botocore ``Session`` or an aiobotocore
  ``AioSession``: every S3 client the session creates *afterwards* is pooled
  (botocore copies a session's handlers into a client when the client is
  made). The session's default ``max_pool_connections`` is raised to the
  pool's limit.
- an existing S3 client, sync or async: its events are pooled from now on.

Only S3 clients are pooled; clients of other services are left alone.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import Any

from ...core.context import validate_tenant
from ...core.environment import pool_for
from ...core.pool import OperationsPool
from .bodies import BODY_IDLE_TIMEOUT
from .connections import connections_needed, raise_session_connections, warn_if_too_small
from .handlers import ClientHandlers
from .mixins import AsyncPooledClientMixin, PooledClientMixin
from .retries import restore_botocore_retries

log = logging.getLogger("s3pool_plugins.botocore")

SERVICE = "s3"
_CLASS_EVENT = f"creating-client-class.{SERVICE}"
_CLASS_HANDLER_ID = "s3pool-creating-client-class"

ACCEPTED_TARGETS = (
    "a boto3.Session, a botocore.session.Session, an aiobotocore AioSession, "
    "or an S3 client made by one of them (sync or async)"
)

_installed: weakref.WeakKeyDictionary[Any, ClientHandlers] = weakref.WeakKeyDictionary()


class _SessionInstallation:
    """The ``creating-client-class`` handler of one installed session."""

    def __init__(self, handlers: ClientHandlers, is_async: bool) -> None:
        self.handlers = handlers
        self.mixin: type = AsyncPooledClientMixin if is_async else PooledClientMixin

    def __call__(self, class_attributes: dict[str, Any], base_classes: list[type], **_: Any) -> None:
        class_attributes["_s3pool_handlers"] = self.handlers
        if self.mixin not in base_classes:
            base_classes.insert(0, self.mixin)


def _is_async_session(target: Any) -> bool:
    try:
        from aiobotocore.session import AioSession
    except ImportError:  # pragma: no cover - aiobotocore comes with s3fs
        return False
    return isinstance(target, AioSession)


def _is_async_client(client: Any) -> bool:
    try:
        from aiobotocore.client import AioBaseClient
    except ImportError:  # pragma: no cover
        return False
    return isinstance(client, AioBaseClient)


def _session_parts(target: Any) -> tuple[Any, Any] | None:
    """(botocore session, its event emitter) for a supported session, else None."""
    from botocore.session import Session as BotocoreSession

    if isinstance(target, BotocoreSession):
        return target, target.get_component("event_emitter")
    try:
        import boto3.session
    except ImportError:  # pragma: no cover - boto3 is optional
        return None
    if isinstance(target, boto3.session.Session):
        # boto3 exposes the emitter publicly (Session.events) but the botocore
        # session only as ``_session``; it is read, never replaced.
        return target._session, target.events
    return None


def _is_client(target: Any) -> bool:
    from botocore.client import BaseClient

    return isinstance(target, BaseClient)


def _service_of(client: Any) -> str:
    return str(client.meta.service_model.service_id.hyphenize())


def install(
    target: Any,
    pool: OperationsPool | None = None,
    *,
    priorities: Mapping[str, float] | None = None,
    tenant: str | None = None,
    body_idle_timeout: float = BODY_IDLE_TIMEOUT,
    **options: Any,
) -> OperationsPool:
    """Put the S3 calls of ``target`` under ``pool``.

    Without ``pool``: a new pool built from ``options`` (any
    :class:`~s3pool_plugins.PoolConfig` option, e.g. ``concurrency=32``),
    or, without options either, the process-wide :func:`default_pool`.
    Giving both a pool and pool options raises
    :class:`~s3pool_plugins.ConfigurationError`.
    ``priorities`` maps operation names (``{"GetObject": 5}``) to the
    priority their calls get when no priority scope or hook chose one.
    ``tenant`` makes every call of ``target`` count for that tenant of the
    pool's fair sharing (see the pool option ``tenants``); a ``tenant``
    scope active when a call is made wins over it.
    ``body_idle_timeout`` (seconds, default 60): a streamed result (GetObject's
    ``Body``) keeps its call's slot until it is read to the end, closed or
    collected, or until nobody touched it for this long.
    Installing again is harmless: with the same pool and options nothing
    changes, with others they replace the old ones. A disabled pool
    (``enabled=False``) installs nothing and leaves botocore as it was.
    Returns the pool. Raises ``TypeError`` naming the accepted targets, and
    ``ValueError`` for a client of another service than S3.
    """
    pool = pool_for("install", pool, options)
    if priorities is not None and not isinstance(priorities, Mapping):
        raise TypeError(f"install() needs priorities as a mapping of operation name to priority, got {priorities!r}")
    if tenant is not None:
        validate_tenant(tenant)
    handlers = ClientHandlers(pool, priorities, tenant, body_idle_timeout)  # validates the options first
    session = _session_parts(target)
    if session is None and not _is_client(target):
        raise TypeError(f"install() accepts {ACCEPTED_TARGETS}; got {type(target).__module__}.{type(target).__name__}")
    if session is None and _service_of(target) != SERVICE:
        raise ValueError(f"install() pools S3 clients only; this client is for {_service_of(target)!r}")
    previous = _installed.get(target)
    if previous is not None:
        if (
            previous.pool is pool
            and previous.priorities == handlers.priorities
            and previous.tenant == tenant
            and previous.body_idle_timeout == handlers.body_idle_timeout
        ):
            return pool
        uninstall(target)
    if not pool.enabled:
        log.debug("pool %s is disabled: nothing installed on %r", pool.config.name, target)
        return pool
    if session is not None:
        botocore_session, emitter = session
        is_async = _is_async_session(botocore_session)
        emitter.register(_CLASS_EVENT, _SessionInstallation(handlers, is_async), unique_id=_CLASS_HANDLER_ID)
        raise_session_connections(botocore_session, connections_needed(pool), is_async=is_async)
    else:
        if isinstance(target, (PooledClientMixin, AsyncPooledClientMixin)):
            target._s3pool_handlers = handlers  # the instance's handlers win over its class's until uninstall
        else:
            handlers.adopt_client(target)
            handlers.register(target.meta.events, SERVICE, is_async=_is_async_client(target), client=target)
        warn_if_too_small(target, pool.concurrency)
    _installed[target] = handlers
    return pool


def uninstall(target: Any) -> bool:
    """Undo :func:`install` on ``target``; False if it was not installed.

    For a session: clients it creates from now on are plain again; clients it
    already made stay pooled. For a client: its handlers are removed and
    botocore's own retry handler is registered again for its retry mode.
    """
    handlers = _installed.pop(target, None)
    if handlers is None:
        return False
    session = _session_parts(target)
    if session is not None:
        session[1].unregister(_CLASS_EVENT, unique_id=_CLASS_HANDLER_ID)
    elif isinstance(target, (PooledClientMixin, AsyncPooledClientMixin)):
        vars(target).pop("_s3pool_handlers", None)  # back to its session's handlers (its class's)
    else:
        handlers.unregister(target.meta.events, SERVICE)
        restore_botocore_retries(target, is_async=_is_async_client(target))
    return True


def installed_pool(target: Any) -> OperationsPool | None:
    """The pool installed on ``target`` (a session or a client), or None."""
    if isinstance(target, (PooledClientMixin, AsyncPooledClientMixin)):
        return target._s3pool_handlers.pool
    handlers = _installed.get(target)
    return None if handlers is None else handlers.pool
