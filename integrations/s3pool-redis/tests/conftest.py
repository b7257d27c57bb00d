"""Fixtures: Redis servers from the distribution's pytest plugin, and the project's local S3 and ChaosProxy.

The Redis fixtures are also registered through the ``pytest11`` entry point
when the distribution is installed; imported here as well so that the tests
run from a checkout that only put it on ``sys.path``.
"""

from s3pool_redis.testing.pytest_plugin import redis_password_server, redis_server, redis_tls

from s3pool_plugins.testing.pytest_plugin import chaos_proxy, local_s3, s3_bucket

__all__ = ["chaos_proxy", "local_s3", "redis_password_server", "redis_server", "redis_tls", "s3_bucket"]
