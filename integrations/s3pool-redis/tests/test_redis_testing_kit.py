"""The testing kit starts a real Redis server and causes the faults the fault tests rely on."""

from __future__ import annotations

import ssl

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from s3pool_redis.testing import RedisServer
from s3pool_redis.testing.pytest_plugin import RedisTLS


def test_server_answers_and_restarts_empty_on_the_same_port(redis_server: RedisServer) -> None:
    client = redis_server.client()
    client.set("k", "v")
    port = redis_server.port
    redis_server.restart()
    assert redis_server.port == port and redis_server.starts == 2
    with redis_server.client() as fresh:
        assert fresh.get("k") is None
    client.close()


def test_killed_server_refuses_connections(redis_server: RedisServer) -> None:
    redis_server.kill()
    assert not redis_server.running
    with pytest.raises(redis.ConnectionError), redis_server.client(socket_connect_timeout=1) as client:
        client.ping()


def test_frozen_server_times_out_and_thaws(redis_server: RedisServer) -> None:
    redis_server.freeze()
    try:
        with pytest.raises(redis.TimeoutError), redis_server.client(socket_timeout=0.2) as client:
            client.ping()
    finally:
        redis_server.thaw()
    with redis_server.client() as client:
        assert client.ping()


def test_paused_server_holds_commands_then_answers(redis_server: RedisServer) -> None:
    redis_server.pause(1.0)
    with (
        pytest.raises(redis.TimeoutError),
        redis_server.client(socket_timeout=0.2, socket_connect_timeout=0.2) as client,
    ):
        client.get("k")
    with redis_server.client() as client:
        assert client.get("k") is None


def test_password_server_refuses_anonymous_clients(redis_password_server: RedisServer) -> None:
    with redis_password_server.client() as client:
        assert client.ping()
    anonymous = redis.Redis(
        host=redis_password_server.host, port=redis_password_server.port, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()


def test_tls_front_speaks_tls_and_requires_a_client_certificate(redis_tls: RedisTLS) -> None:
    server, tls = redis_tls.server, redis_tls.tls
    common = {"username": server.username, "password": server.password}
    with redis.Redis.from_url(redis_tls.url(), socket_timeout=5.0, retry=Retry(NoBackoff(), 0)) as client:
        assert client.ping()
    plain = redis.Redis(host="127.0.0.1", port=tls.port, socket_timeout=1.0, retry=Retry(NoBackoff(), 0), **common)  # type: ignore[arg-type]
    with pytest.raises(redis.RedisError):
        plain.ping()
    plain.close()
    no_cert = redis.Redis(
        host="127.0.0.1",
        port=tls.port,
        ssl=True,
        ssl_ca_certs=tls.ca_path,
        socket_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
        **common,  # type: ignore[arg-type]
    )
    with pytest.raises((redis.RedisError, ssl.SSLError)):
        no_cert.ping()
    no_cert.close()
