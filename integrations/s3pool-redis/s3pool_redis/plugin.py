"""The s3pool plugin (entry point ``redis`` in the ``s3pool`` group): ``redis://`` and ``rediss://`` fleet URLs."""

from __future__ import annotations

from s3pool_plugins import FleetBackend
from s3pool_plugins.hooks import hookimpl

from .backend import RedisFleetBackend
from .url import SCHEMES, is_redis_url

fleet_schemes = SCHEMES
"""The fleet URL schemes this plugin provides (the pool names them when no plugin takes a URL)."""


@hookimpl
def s3pool_fleet_backend(url: str, fleet_name: str) -> FleetBackend | None:
    """A :class:`~s3pool_redis.RedisFleetBackend` for a Redis URL, None for any other scheme.

    Does not connect; a malformed Redis URL raises ConfigurationError naming ``fleet``.
    """
    if not is_redis_url(url):
        return None
    return RedisFleetBackend(url, fleet_name)
