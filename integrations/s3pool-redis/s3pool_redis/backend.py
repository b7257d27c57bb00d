"""The Redis fleet backend: pools in many processes and hosts share one S3 budget through one Redis.

:class:`RedisFleetBackend` keeps the contract of
:class:`s3pool_plugins.FleetBackend`. Each method is one atomic Lua script
(or one command) on Redis's own clock, sent over a connection pool whose
connect and read timeouts are the backend's ``call_timeout``; every Redis
error, timeout or unexpected reply becomes
:class:`~s3pool_plugins.FleetUnavailable` with a message that names the
store and never its credentials. A store restarted empty is a fresh start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from s3pool_plugins import ConfigurationError, FleetBackend, FleetPartition, FleetUnavailable, SharedLimit, TokenGrant

from . import scripts
from .keys import PartitionKeys
from .secret import Credentials
from .url import RedisSettings, parse_timeout, parse_url

DEFAULT_CALL_TIMEOUT = 0.25
"""Seconds a connect, and a reply, may take before a call raises FleetUnavailable."""

DEFAULT_KEY_TTL = 86400.0
"""Seconds the keys of a partition live after their last write (longer while a lease or the bucket needs them)."""

_T = TypeVar("_T")

_TAKE_TOKENS = scripts.LuaScript(scripts.TAKE_TOKENS)
_LEASE_SLOTS = scripts.LuaScript(scripts.LEASE_SLOTS)
_RENEW_SLOTS = scripts.LuaScript(scripts.RENEW_SLOTS)
_RELEASE_SLOTS = scripts.LuaScript(scripts.RELEASE_SLOTS)
_PROPOSE_LIMIT = scripts.LuaScript(scripts.PROPOSE_LIMIT)
_TAKE_RETRY = scripts.LuaScript(scripts.TAKE_RETRY)
_GIVE_RETRY = scripts.LuaScript(scripts.GIVE_RETRY)


class _UnexpectedReply(Exception):
    """A reply of a shape the scripts never send (someone else wrote our keys)."""


def _float_text(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _optional_float(value: Any) -> float | None:
    text = _text(value) if value is not None else ""
    return None if text == "" else float(text)


class RedisPartition(FleetPartition):
    """One partition's shared state in Redis (see :mod:`s3pool_redis.keys` for its keys)."""

    def __init__(self, key: str, keys: PartitionKeys, backend: RedisFleetBackend) -> None:
        self.key = key
        self._keys = keys
        self._backend = backend

    def take_tokens(self, count: int, rate: float, burst: float) -> TokenGrant:
        reply = self._backend.run(
            "take_tokens",
            lambda client: _TAKE_TOKENS.run(
                client, (self._keys.rate,), (int(count), repr(float(rate)), repr(float(burst)), self._keep_ms())
            ),
        )
        return self._backend.parse("take_tokens", lambda: TokenGrant(int(reply[0]), float(_text(reply[1]))))

    def lease_slots(self, member: str, count: int, limit: int, ttl: float) -> int:
        reply = self._backend.run(
            "lease_slots",
            lambda client: _LEASE_SLOTS.run(
                client,
                (self._keys.slots, self._keys.leases),
                (member, int(count), int(limit), repr(float(ttl)), self._keep_ms()),
            ),
        )
        return self._backend.parse("lease_slots", lambda: int(reply))

    def renew_slots(self, member: str, ttl: float) -> int:
        reply = self._backend.run(
            "renew_slots",
            lambda client: _RENEW_SLOTS.run(
                client, (self._keys.slots, self._keys.leases), (member, repr(float(ttl)), self._keep_ms())
            ),
        )
        return self._backend.parse("renew_slots", lambda: int(reply))

    def release_slots(self, member: str, count: int) -> int:
        reply = self._backend.run(
            "release_slots",
            lambda client: _RELEASE_SLOTS.run(client, (self._keys.slots, self._keys.leases), (member, int(count))),
        )
        return self._backend.parse("release_slots", lambda: int(reply))

    def shared_limit(self) -> SharedLimit | None:
        reply = self._backend.run(
            "shared_limit",
            lambda client: client.hmget(self._keys.limit, ["rate", "limit", "ceiling", "version", "updated_at"]),
        )
        if reply[3] is None:
            return None
        return self._backend.parse("shared_limit", lambda: self._record(reply))

    def propose_limit(self, proposal: SharedLimit) -> SharedLimit:
        args = (
            int(proposal.version),
            _float_text(proposal.rate),
            int(proposal.limit),
            _float_text(proposal.ceiling),
            self._keep_ms(),
        )
        reply = self._backend.run("propose_limit", lambda client: _PROPOSE_LIMIT.run(client, (self._keys.limit,), args))
        return self._backend.parse("propose_limit", lambda: self._record(reply))

    def take_retry(self, cost: int, capacity: int) -> bool:
        reply = self._backend.run(
            "take_retry",
            lambda client: _TAKE_RETRY.run(client, (self._keys.retry,), (int(cost), int(capacity), self._keep_ms())),
        )
        return self._backend.parse("take_retry", lambda: int(reply) == 1)

    def give_retry(self, amount: int, capacity: int) -> None:
        self._backend.run(
            "give_retry",
            lambda client: _GIVE_RETRY.run(client, (self._keys.retry,), (int(amount), int(capacity), self._keep_ms())),
        )

    def _keep_ms(self) -> int:
        return self._backend.key_ttl_ms

    @staticmethod
    def _record(reply: list[Any]) -> SharedLimit:
        if len(reply) != 5 or reply[1] is None or reply[3] is None or reply[4] is None:
            raise _UnexpectedReply("an incomplete limit record")
        return SharedLimit(
            rate=_optional_float(reply[0]),
            limit=int(_text(reply[1])),
            ceiling=_optional_float(reply[2]),
            version=int(_text(reply[3])),
            updated_at=float(_text(reply[4])),
        )

    def __repr__(self) -> str:
        return f"RedisPartition({self.key!r}, {self._backend.description!r})"


class RedisFleetBackend(FleetBackend):
    """A fleet store in Redis at ``url`` (``redis://`` or ``rediss://``, see :mod:`s3pool_redis.url`).

    ``call_timeout`` (seconds, > 0 and <= 60; default the URL's ``timeout=``,
    else 0.25) bounds each connect and each reply: a call returns or raises
    :class:`~s3pool_plugins.FleetUnavailable` within one connect and one
    reply (plus one more reply, once, when a restarted store must be sent a
    script again). ``key_ttl`` (seconds) is how long a partition's keys live
    after their last write. Building the backend does not connect:
    connections are made on first use and again after the store comes back.
    Thread-safe; :meth:`close` releases the connections.
    """

    def __init__(
        self,
        url: str,
        fleet_name: str = "s3pool",
        *,
        call_timeout: float | None = None,
        key_ttl: float = DEFAULT_KEY_TTL,
    ) -> None:
        settings = parse_url(url)
        if not isinstance(fleet_name, str) or not fleet_name:
            raise ConfigurationError("fleet_name", "a non-empty string", fleet_name)
        if call_timeout is not None:
            timeout = parse_timeout(call_timeout, "call_timeout")
        else:
            timeout = settings.timeout if settings.timeout is not None else DEFAULT_CALL_TIMEOUT
        if isinstance(key_ttl, bool) or not isinstance(key_ttl, (int, float)) or not 1.0 <= key_ttl <= 30 * 86400:
            raise ConfigurationError("key_ttl", "a number of seconds >= 1 and <= 2,592,000 (30 days)", key_ttl)
        self.fleet_name = fleet_name
        self.call_timeout = timeout
        """Seconds each connect and each reply may take."""
        self.key_ttl_ms = int(key_ttl * 1000)
        self._settings = settings
        self._lock = threading.Lock()
        self._closed = False
        self._client = redis.Redis(connection_pool=self._make_pool(settings, timeout))

    @property
    def description(self) -> str:
        return self._settings.description

    def partition(self, key: str) -> FleetPartition:
        return RedisPartition(key, PartitionKeys.of(self.fleet_name, key), self)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._client.connection_pool.disconnect()
        self._client.close()

    def after_fork(self) -> None:
        """In a forked child: forget the connections inherited from the parent (its sockets: never closed
        or written to here) and open new ones on next use; a new lock. The store's state is untouched."""
        self._lock = threading.Lock()
        self._client.connection_pool.reset()

    def run(self, what: str, call: Callable[[redis.Redis], _T]) -> _T:
        """``call(client)``; any Redis error or timeout becomes :class:`~s3pool_plugins.FleetUnavailable`."""
        if self._closed:
            raise FleetUnavailable(f"fleet store {self.description} ({what}): the backend is closed")
        try:
            return call(self._client)
        except (redis.RedisError, OSError) as exc:
            raise FleetUnavailable(self._failure(what, exc)) from None

    def parse(self, what: str, read: Callable[[], _T]) -> _T:
        """``read()`` (which decodes a reply); a reply of an unexpected shape becomes FleetUnavailable."""
        try:
            return read()
        except (_UnexpectedReply, ValueError, TypeError, IndexError, KeyError) as exc:
            raise FleetUnavailable(self._failure(what, exc, reply=True)) from None

    def _failure(self, what: str, exc: BaseException, *, reply: bool = False) -> str:
        detail = str(exc)
        password = self._settings.password
        if password is not None:
            secret = password.reveal()
            if secret:
                detail = detail.replace(secret, "***")
        kind = "unexpected reply" if reply else type(exc).__name__
        return f"fleet store {self.description} unavailable ({what}): {kind}: {detail}"

    @staticmethod
    def _make_pool(settings: RedisSettings, timeout: float) -> redis.ConnectionPool:
        options: dict[str, Any] = {
            "host": settings.host,
            "port": settings.port,
            "db": settings.db,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "socket_keepalive": True,
            # One immediate retry for a connection the store closed (a restart); none for a timeout.
            "retry": Retry(NoBackoff(), 1),
            "retry_on_error": [redis.ConnectionError],
            "retry_on_timeout": False,
            "health_check_interval": 0,
            "protocol": 2,
        }
        if settings.password is not None:
            options["credential_provider"] = Credentials(settings.username, settings.password)
        connection_class: type[redis.Connection] = redis.Connection
        if settings.tls is not None:
            connection_class = redis.SSLConnection
            options.update(
                ssl_ca_certs=settings.tls.ca_certs,
                ssl_certfile=settings.tls.certfile,
                ssl_keyfile=settings.tls.keyfile,
                ssl_cert_reqs=settings.tls.cert_reqs,
                ssl_check_hostname=settings.tls.check_hostname,
            )
        return redis.ConnectionPool(connection_class=connection_class, **options)

    def __repr__(self) -> str:
        return f"RedisFleetBackend({self.description!r}, fleet_name={self.fleet_name!r})"
