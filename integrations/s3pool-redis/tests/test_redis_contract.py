"""The Redis backend keeps the fleet backend contract (the project's reusable contract kit), plain and over TLS."""

from __future__ import annotations

import pytest
from s3pool_plugins.testing.fleet_contract import BackendFactory, FleetBackendContract
from s3pool_redis import RedisFleetBackend
from s3pool_redis.testing import RedisServer
from s3pool_redis.testing.pytest_plugin import RedisTLS


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


class TestRedisBackendOverTLS(FleetBackendContract):
    @pytest.fixture
    def make_backend(self, redis_tls: RedisTLS) -> BackendFactory:
        assert redis_tls.server.password is not None
        self.secrets = (redis_tls.server.password,)
        return lambda fleet_name: RedisFleetBackend(redis_tls.url(), fleet_name, call_timeout=2.0)
