"""The Redis fixtures come from the distribution's pytest plugin (``pytest11`` entry point when installed).

Imported here as well so that the tests also run from a checkout that only
put the distribution on ``sys.path``.
"""

from s3pool_redis.testing.pytest_plugin import redis_password_server, redis_server, redis_tls

__all__ = ["redis_password_server", "redis_server", "redis_tls"]
