"""The seeded fault plan of :class:`~s3pool_plugins.testing.ChaosProxy`: pure logic, no sockets.

A :class:`FaultPlan` answers one question per request, in arrival order: what
happens to it (a :class:`Decision`). The answer comes from, in this order:

1. the queue of injected actions (:meth:`FaultPlan.inject`), one per request;
2. the token bucket of the longest matching rate-limited prefix for the
   request's class (reads: GET and HEAD; writes: every other method): no
   token means :attr:`Action.THROTTLE`;
3. one uniform draw compared with the cumulative rates of
   :class:`FaultConfig` (throttle, error, reset, truncate, slow body, in that
   order; the rates are probabilities of disjoint outcomes).

Every request consumes exactly five draws of one ``random.Random(seed)``,
whatever its outcome and configuration, under a lock. Hence a sequential
workload (one request at a time) meets exactly the same faults and latencies
on every run with the same seed; a concurrent workload meets the same rates,
but which request gets which draw depends on arrival order. Token buckets
follow the clock, not the seed.

Times are seconds (floats).
"""

from __future__ import annotations

import enum
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError

READ_METHODS: frozenset[str] = frozenset({"GET", "HEAD"})
"""Methods counted as reads by the rate limits; every other method is a write."""

DRAWS_PER_REQUEST = 5
"""Uniform draws every decision consumes, so the n-th request always gets the same ones."""


class Action(enum.Enum):
    """What the proxy does with one request."""

    FORWARD = "forward"
    """Forward to the upstream and relay its answer unchanged."""
    THROTTLE = "throttle"
    """Answer 503 ``SlowDown`` at once, without latency; the upstream never sees the request."""
    INTERNAL_ERROR = "internal_error"
    """Answer 500 ``InternalError``; the upstream never sees the request."""
    INTERNAL_ERROR_AFTER = "internal_error_after"
    """Forward (the operation happens), then answer 500 ``InternalError`` instead of the upstream's answer."""
    RESET = "reset"
    """Reset the connection (TCP RST) before forwarding."""
    RESET_AFTER = "reset_after"
    """Forward (the operation happens), then reset the connection instead of answering."""
    TRUNCATE = "truncate"
    """Forward, send the full headers but only part of the body, then close the connection."""
    SLOW_BODY = "slow_body"
    """Forward and trickle the response body at a fixed rate."""


@dataclass(frozen=True)
class Latency:
    """A latency distribution: a lognormal body around ``median`` plus a Pareto tail.

    A sample is ``median * exp(sigma * Z)`` with ``Z`` standard normal, so
    ``median`` is the median of the body and ``sigma`` its spread (0 gives a
    constant). With probability ``tail_probability`` the sample is instead an
    outlier ``tail_scale * P`` where ``P`` is Pareto-distributed with shape
    ``tail_alpha`` (``P >= 1``, heavier for smaller alpha); ``tail_scale``
    defaults to ``10 * median``. Every sample is capped at ``maximum``.
    """

    median: float
    sigma: float = 0.25
    tail_probability: float = 0.0
    tail_scale: float | None = None
    tail_alpha: float = 1.5
    maximum: float = 10.0

    def __post_init__(self) -> None:
        _check_non_negative("latency.median", self.median)
        _check_non_negative("latency.sigma", self.sigma)
        _check_probability("latency.tail_probability", self.tail_probability)
        if self.tail_scale is not None:
            _check_non_negative("latency.tail_scale", self.tail_scale)
        if not (isinstance(self.tail_alpha, (int, float)) and self.tail_alpha > 0):
            raise ConfigurationError("latency.tail_alpha", "a number > 0", self.tail_alpha)
        _check_non_negative("latency.maximum", self.maximum)

    def sample(self, u_normal_1: float, u_normal_2: float, u_tail: float, u_size: float) -> float:
        """The latency for four uniform draws in ``[0, 1)`` (deterministic, so testable)."""
        if u_tail < self.tail_probability:
            scale = self.tail_scale if self.tail_scale is not None else 10.0 * self.median
            value = scale * float((1.0 - u_size) ** (-1.0 / self.tail_alpha))
        else:
            z = math.sqrt(-2.0 * math.log(1.0 - u_normal_1)) * math.cos(2.0 * math.pi * u_normal_2)
            value = self.median * math.exp(self.sigma * z)
        return min(value, self.maximum)


@dataclass(frozen=True)
class FaultConfig:
    """The random faults of a proxy; immutable, change it with :meth:`FaultPlan.configure`.

    The five rates are per-request probabilities of disjoint outcomes and must
    sum to at most 1. ``error_after_forward`` and ``reset_after_forward`` make
    errors and resets happen after the upstream performed the request (the
    write happened, the client still sees a failure). ``truncate_fraction`` is
    the share of the body sent before a truncating close;
    ``slow_body_bytes_per_second`` the trickle rate of a slow body.
    ``bandwidth_per_connection`` (bytes per second, or None for no cap)
    caps every response body the proxy sends on one client connection, as
    a link of that bandwidth would (not a fault: it draws nothing); a slow
    body goes at the lower of the two rates.
    """

    latency: Latency | None = None
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    error_after_forward: bool = False
    reset_rate: float = 0.0
    reset_after_forward: bool = False
    truncate_rate: float = 0.0
    truncate_fraction: float = 0.5
    slow_body_rate: float = 0.0
    slow_body_bytes_per_second: float = 64 * 1024
    bandwidth_per_connection: float | None = None

    def __post_init__(self) -> None:
        if self.latency is not None and not isinstance(self.latency, Latency):
            raise ConfigurationError("latency", "a Latency, a median in seconds, or None", self.latency)
        rates = ("throttle_rate", "error_rate", "reset_rate", "truncate_rate", "slow_body_rate")
        for name in rates:
            _check_probability(name, getattr(self, name))
        total = sum(getattr(self, name) for name in rates)
        if total > 1.0 + 1e-9:
            raise ConfigurationError("+".join(rates), "rates summing to at most 1", total)
        _check_probability("truncate_fraction", self.truncate_fraction)
        if self.truncate_fraction >= 1.0:
            raise ConfigurationError("truncate_fraction", "a fraction in [0, 1)", self.truncate_fraction)
        rate = self.slow_body_bytes_per_second
        if isinstance(rate, bool) or not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ConfigurationError("slow_body_bytes_per_second", "a finite number > 0", rate)
        cap = self.bandwidth_per_connection
        if cap is not None and (
            isinstance(cap, bool) or not (isinstance(cap, (int, float)) and math.isfinite(cap) and cap > 0)
        ):
            raise ConfigurationError(
                "bandwidth_per_connection", "a finite number of bytes per second > 0, or None", cap
            )

    @classmethod
    def build(cls, base: FaultConfig | None = None, **changes: Any) -> FaultConfig:
        """``base`` (default: no faults) with ``changes``; a number for ``latency`` means its median."""
        known = {f.name for f in fields(cls)}
        for name in changes:
            if name not in known:
                raise ConfigurationError(name, "one of " + ", ".join(sorted(known)), changes[name])
        latency = changes.get("latency")
        if isinstance(latency, (int, float)) and not isinstance(latency, bool):
            changes["latency"] = Latency(median=float(latency))
        return replace(base if base is not None else cls(), **changes)


class TokenBucket:
    """A token bucket: ``burst`` tokens at most, refilled at ``rate`` per second; not thread-safe.

    ``take(now)`` spends one token if there is one. Over any interval of
    ``T`` seconds it grants at most ``burst + rate * T`` requests.
    """

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float) -> bool:
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class PrefixLimit:
    """The read and write rates (requests per second) of one prefix; ``None`` means unlimited."""

    prefix: str
    reads_per_second: float | None
    writes_per_second: float | None
    burst: float | None


@dataclass(frozen=True)
class Decision:
    """The fate of one request: its arrival ``index`` (from 0), ``action`` and ``latency`` (seconds).

    ``limited_by`` names the rate-limited prefix that throttled it, if any.
    Throttled requests have no latency: S3 answers ``SlowDown`` at once.
    """

    index: int
    action: Action
    latency: float = 0.0
    limited_by: str | None = None


def is_read(method: str) -> bool:
    """GET and HEAD are reads; every other method is a write."""
    return method.upper() in READ_METHODS


def resource_of(host: str, target: str) -> str:
    """``bucket/key`` (key percent-decoded, ``bucket/`` for bucket-level requests) of a request.

    Path-style (``/bucket/key``) unless the Host header names a bucket:
    virtual-host style is recognised for hosts ``<bucket>.localhost`` and
    ``<bucket>.s3[.-]...`` (as AWS names them). The service root (ListBuckets)
    gives ``""``. ``target`` may be origin-form (``/b/k?q``) or absolute-form.
    """
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        host = parts.netloc or host
        path = parts.path
    else:
        path = target.split("?", 1)[0]
    path = unquote(path)
    hostname = _hostname(host)
    bucket = _virtual_host_bucket(hostname)
    if bucket is not None:
        return f"{bucket}/{path.lstrip('/')}"
    path = path.lstrip("/")
    if not path:
        return ""
    bucket, _, key = path.partition("/")
    return f"{bucket}/{key}"


def _hostname(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _virtual_host_bucket(hostname: str) -> str | None:
    if hostname.endswith(".localhost"):
        return hostname[: -len(".localhost")] or None
    for marker in (".s3.", ".s3-"):
        position = hostname.find(marker)
        if position > 0:
            return hostname[:position]
    return None


class FaultPlan:
    """Thread-safe, seeded decisions for a stream of requests (see the module docstring).

    ``clock`` (default ``time.monotonic``) drives the token buckets; tests
    pass a fake one.
    """

    def __init__(
        self,
        seed: int = 0,
        config: FaultConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._seed = seed
        self._random = random.Random(seed)
        self._config = config if config is not None else FaultConfig()
        self._limits: dict[str, PrefixLimit] = {}
        self._read_buckets: dict[str, TokenBucket] = {}
        self._write_buckets: dict[str, TokenBucket] = {}
        self._injected: deque[tuple[Action, float | None]] = deque()
        self._index = 0

    @property
    def config(self) -> FaultConfig:
        return self._config

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def limits(self) -> tuple[PrefixLimit, ...]:
        with self._lock:
            return tuple(self._limits.values())

    def configure(self, **changes: Any) -> FaultConfig:
        """Change some fields of the current :class:`FaultConfig`; returns the new one.

        Validation happens before anything changes: a bad value leaves the
        plan as it was and raises :class:`~s3pool_plugins.errors.ConfigurationError`.
        """
        with self._lock:
            self._config = FaultConfig.build(self._config, **changes)
            return self._config

    def set_config(self, config: FaultConfig) -> None:
        with self._lock:
            self._config = config

    def limit_prefix(
        self,
        prefix: str,
        *,
        reads_per_second: float | None = None,
        writes_per_second: float | None = None,
        burst: float | None = None,
    ) -> PrefixLimit:
        """Rate-limit requests whose ``bucket/key`` starts with ``prefix``, per class.

        Reads (GET, HEAD) and writes (everything else) have separate buckets,
        each starting full with ``burst`` tokens (default: ``max(1, rate)``,
        or 0 for a rate of 0, which throttles every request of that class).
        A request is limited by the longest matching prefix that limits its
        class. Calling again for the same prefix replaces its limits with
        fresh, full buckets.
        """
        for name, rate in (("reads_per_second", reads_per_second), ("writes_per_second", writes_per_second)):
            if rate is not None:
                _check_non_negative(name, rate)
        if burst is not None:
            _check_non_negative("burst", burst)
            if burst < 1 and any(rate for rate in (reads_per_second, writes_per_second)):
                raise ConfigurationError("burst", "a number >= 1 (a bucket holding less never grants a request)", burst)
        limit = PrefixLimit(prefix, reads_per_second, writes_per_second, burst)
        with self._lock:
            now = self._clock()
            self._limits[prefix] = limit
            self._read_buckets.pop(prefix, None)
            self._write_buckets.pop(prefix, None)
            if reads_per_second is not None:
                self._read_buckets[prefix] = TokenBucket(reads_per_second, _burst(reads_per_second, burst), now)
            if writes_per_second is not None:
                self._write_buckets[prefix] = TokenBucket(writes_per_second, _burst(writes_per_second, burst), now)
        return limit

    def remove_limit(self, prefix: str) -> None:
        with self._lock:
            self._limits.pop(prefix, None)
            self._read_buckets.pop(prefix, None)
            self._write_buckets.pop(prefix, None)

    def inject(self, action: Action, count: int = 1, *, latency: float | None = None) -> None:
        """Force ``action`` on the next ``count`` requests (after any already injected).

        ``latency``: seconds each of them waits before it is forwarded (a
        slow answer to its headers), instead of the configured distribution's
        draw; None keeps the draw. A throttled request never waits.
        """
        if not isinstance(action, Action):
            raise ConfigurationError("action", "an Action", action)
        if not (isinstance(count, int) and count >= 0):
            raise ConfigurationError("count", "an int >= 0", count)
        if latency is not None:
            _check_non_negative("latency", latency)
        with self._lock:
            self._injected.extend([(action, latency)] * count)

    def clear(self) -> None:
        """No random faults, no rate limits, nothing injected. The random sequence goes on."""
        with self._lock:
            self._config = FaultConfig()
            self._limits.clear()
            self._read_buckets.clear()
            self._write_buckets.clear()
            self._injected.clear()

    def reseed(self, seed: int) -> None:
        """Restart the random sequence (and the arrival index) from ``seed``."""
        with self._lock:
            self._seed = seed
            self._random = random.Random(seed)
            self._index = 0

    def decide(self, method: str, resource: str) -> Decision:
        """The decision for the next request to arrive: ``method`` and its ``bucket/key``."""
        with self._lock:
            index = self._index
            self._index += 1
            draw = self._random.random
            u_action, u_n1, u_n2, u_tail, u_size = draw(), draw(), draw(), draw(), draw()
            config = self._config
            latency = config.latency.sample(u_n1, u_n2, u_tail, u_size) if config.latency is not None else 0.0
            if self._injected:
                action, forced = self._injected.popleft()
                if forced is not None:
                    latency = forced
                return Decision(index, action, 0.0 if action is Action.THROTTLE else latency)
            buckets = self._read_buckets if is_read(method) else self._write_buckets
            if buckets:
                prefix = _longest_prefix(buckets, resource)
                if prefix is not None and not buckets[prefix].take(self._clock()):
                    return Decision(index, Action.THROTTLE, 0.0, prefix)
            action = _pick(config, u_action)
            return Decision(index, action, 0.0 if action is Action.THROTTLE else latency)


def _pick(config: FaultConfig, u: float) -> Action:
    edge = config.throttle_rate
    if u < edge:
        return Action.THROTTLE
    edge += config.error_rate
    if u < edge:
        return Action.INTERNAL_ERROR_AFTER if config.error_after_forward else Action.INTERNAL_ERROR
    edge += config.reset_rate
    if u < edge:
        return Action.RESET_AFTER if config.reset_after_forward else Action.RESET
    edge += config.truncate_rate
    if u < edge:
        return Action.TRUNCATE
    edge += config.slow_body_rate
    if u < edge:
        return Action.SLOW_BODY
    return Action.FORWARD


def _longest_prefix(buckets: dict[str, TokenBucket], resource: str) -> str | None:
    best: str | None = None
    for prefix in buckets:
        if resource.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return best


def _burst(rate: float, burst: float | None) -> float:
    if burst is not None:
        return burst
    return max(1.0, rate) if rate > 0 else 0.0


def _check_probability(option: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigurationError(option, "a probability in [0, 1]", value)


def _check_non_negative(option: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigurationError(option, "a number >= 0", value)
