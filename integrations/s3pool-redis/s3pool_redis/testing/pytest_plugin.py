"""pytest fixtures: a real Redis server per test, plain, password-protected, and behind TLS.

Registered through the ``pytest11`` entry point of the ``s3pool-redis``
distribution, so any test run where it is installed has them:

- ``redis_server``: a :class:`~s3pool_redis.testing.RedisServer` without
  authentication. ``redis_server.url()`` is its ``redis://`` URL;
  ``kill()``, ``restart()`` (empty, same port), ``freeze()``/``thaw()`` and
  ``pause(seconds)`` cause faults.
- ``redis_password_server``: the same with an ACL user and a random
  password (``.username``, ``.password``; ``url()`` carries them).
- ``redis_tls``: a :class:`RedisTLS`: a password-protected server behind a
  :class:`~s3pool_redis.testing.TLSForwarder` that requires a client
  certificate; ``redis_tls.url()`` is a complete ``rediss://`` URL (CA,
  client certificate and key as query parameters).

Each fixture starts its own server (a few milliseconds) and stops it after the test.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from .server import RedisServer
from .tls import TLSForwarder


class RedisTLS:
    """A password-protected :class:`RedisServer` (``server``) behind a mutual-TLS :class:`TLSForwarder` (``tls``)."""

    def __init__(self, server: RedisServer, tls: TLSForwarder) -> None:
        self.server = server
        self.tls = tls

    def url(self, db: int = 0, *, client_cert: bool = True) -> str:
        """The ``rediss://`` URL with credentials, the CA file and (unless asked not to) the client certificate."""
        query = f"ssl_ca_certs={quote(self.tls.ca_path, safe='/')}"
        if client_cert:
            query += f"&ssl_certfile={quote(self.tls.client_cert_path, safe='/')}"
            query += f"&ssl_keyfile={quote(self.tls.client_key_path, safe='/')}"
        return self.server.url(db, scheme="rediss", port=self.tls.port, query=query)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis server without authentication, stopped after the test."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_password_server() -> Iterator[RedisServer]:
    """A Redis server whose only user is ``s3pool`` with a random password (the default user is off)."""
    with RedisServer(username="s3pool", password="pw-" + secrets.token_urlsafe(18)) as server:
        yield server


@pytest.fixture
def redis_tls() -> Iterator[RedisTLS]:
    """A password-protected Redis server reached through mutual TLS (``rediss://``)."""
    with (
        RedisServer(username="s3pool", password="pw-" + secrets.token_urlsafe(18)) as server,
        TLSForwarder(("127.0.0.1", server.port), require_client_cert=True) as tls,
    ):
        yield RedisTLS(server, tls)
