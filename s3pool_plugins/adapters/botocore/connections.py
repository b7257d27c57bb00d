"""Keep a client's HTTP connection pool at least as large as the pool's limit.

botocore gives each client ``max_pool_connections`` HTTP connections (10 by
default). With more attempts admitted than that, urllib3 opens and throws
away extra connections, and aiohttp makes the extra attempts wait inside the
client while they hold a pool slot: a silent stall. So installing on a
session raises the session's default ``max_pool_connections`` to the pool's
limit (a client created with its own ``Config`` keeps what it asked for),
and a client whose connection pool is smaller than the limit gets a
:class:`ConnectionPoolTooSmall` warning that says what to do.
"""

from __future__ import annotations

import warnings
from typing import Any

from botocore.config import Config


class ConnectionPoolTooSmall(UserWarning):
    """A client has fewer HTTP connections than the pool may admit attempts."""


def connections_needed(pool: Any) -> int:
    """The connections a session's clients should get: the pool's limit, or on ``concurrency="auto"`` its maximum.

    Only session defaults are raised this far. A client that already exists is
    checked against the limit in force: an adaptive limit that later grows past
    it makes urllib3 open short-lived extra connections, and the latency
    this adds holds the limit back by itself.
    """
    tuning = pool.auto_tuning
    return int(tuning.max_concurrency) if tuning is not None else int(pool.concurrency)


def raise_session_connections(botocore_session: Any, limit: int, *, is_async: bool) -> None:
    """Make ``limit`` the session's default ``max_pool_connections`` if it is larger."""
    current = botocore_session.get_default_client_config()
    if current is not None and (current.max_pool_connections or 0) >= limit:
        return
    config_class: Any = Config
    if is_async:
        from aiobotocore.config import AioConfig

        config_class = AioConfig
    if current is None:
        if limit <= Config().max_pool_connections:
            return
        botocore_session.set_default_client_config(config_class(max_pool_connections=limit))
    else:
        botocore_session.set_default_client_config(current.merge(config_class(max_pool_connections=limit)))


def warn_if_too_small(client: Any, limit: int, *, stacklevel: int = 3) -> bool:
    """Warn (once per call) if ``client`` has fewer connections than ``limit``; True if it warned."""
    connections = getattr(client.meta.config, "max_pool_connections", None)
    if connections is None or connections >= limit:
        return False
    warnings.warn(
        ConnectionPoolTooSmall(
            f"this S3 client has max_pool_connections={connections}, but the pool admits up to {limit} "
            f"attempts at once: the extra attempts would wait inside the HTTP client (aiohttp) or churn "
            f"connections (urllib3) while holding a pool slot. Create the client with "
            f"botocore.config.Config(max_pool_connections={limit}) or lower the pool's concurrency."
        ),
        stacklevel=stacklevel,
    )
    return True
