"""The local S3 (moto) and the fault-injecting proxy of s3pool's testing kit, and s3pool-redis's Redis server.

The Redis fixture comes from s3pool-redis's pytest plugin (``pytest11`` entry
point when installed); it is imported here as well so that the tests also
run from a checkout that only put the distributions on ``sys.path``.
"""

from s3pool_redis.testing.pytest_plugin import redis_server

pytest_plugins = ["s3pool_plugins.testing.pytest_plugin"]

__all__ = ["redis_server"]
