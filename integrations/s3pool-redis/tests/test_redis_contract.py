"""The Redis backend keeps the fleet backend contract (the reusable contract kit), with and without a password.

Over TLS, test_redis_security.py checks the same calls through the TLS front (the kit's throughput checks are
meant for a store, not for the Python forwarder the tests put in front of it).
"""

from __future__ import annotations

import pytest
from s3pool_redis import RedisFleetBackend
from s3pool_redis.testing import RedisServer

from s3pool_plugins.testing.fleet_contract import BackendFactory, FleetBackendContract


class TestRedisBackend(FleetBackendContract):
    @pytest.fixture
    def make_backend(self, redis_server: RedisServer) -> BackendFactory:
        return lambda fleet_name: RedisFleetBackend(redis_server.url(), fleet_name, call_timeout=2.0)


class TestRedisBackendWithPassword(FleetBackendContract):
    secrets = ("pw-",)

    @pytest.fixture
    def make_backend(self, redis_password_server: RedisServer) -> BackendFactory:
        assert redis_password_server.password is not None
        self.secrets = (redis_password_server.password,)
        return lambda fleet_name: RedisFleetBackend(redis_password_server.url(), fleet_name, call_timeout=2.0)
