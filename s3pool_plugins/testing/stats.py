"""What a :class:`~s3pool_plugins.testing.ChaosProxy` saw: thread-safe counters and their snapshot."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of the proxy's counters since it started or since ``reset_counts()``.

    - ``requests``: request lines read. ``connections``: client connections
      accepted (fewer than requests means clients kept connections alive).
    - ``in_flight``: requests between their request line and the last write
      of their response (or their reset) right now; ``in_flight_peak``: the
      most at once. A request is counted out just *before* that write, so a
      client can never start its next request while the proxy still counts
      the one it saw finish: a client that keeps N requests in flight is
      measured at no more than N.
    - ``by_status``: responses sent to clients, by HTTP status (injected ones
      included; resets have no status). ``by_method``: requests by method.
    - ``throttled`` (503 ``SlowDown``), ``internal_errors`` (500),
      ``resets``, ``truncated`` and ``slow_bodies``: faults delivered.
      ``upstream_errors``: requests the upstream failed to answer (502).
    - ``attempts``: requests per ``(method, "bucket/key")``, so a test can
      tell how many attempts one object took.
    """

    requests: int = 0
    connections: int = 0
    in_flight: int = 0
    in_flight_peak: int = 0
    by_status: Mapping[int, int] = field(default_factory=dict)
    by_method: Mapping[str, int] = field(default_factory=dict)
    throttled: int = 0
    internal_errors: int = 0
    resets: int = 0
    truncated: int = 0
    slow_bodies: int = 0
    upstream_errors: int = 0
    attempts: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def attempts_for(self, resource: str, method: str | None = None) -> int:
        """Requests for ``resource`` (``"bucket/key"``), of ``method`` or of any method."""
        return sum(n for (m, r), n in self.attempts.items() if r == resource and (method is None or m == method))


class Counters:
    """The live counters behind :class:`ProxyStats`; every method is thread-safe and O(1)."""

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._zero()

    def _zero(self) -> None:
        self._requests = 0
        self._connections = 0
        self._peak = self._in_flight
        self._by_status: Counter[int] = Counter()
        self._by_method: Counter[str] = Counter()
        self._attempts: Counter[tuple[str, str]] = Counter()
        self._faults: Counter[str] = Counter()

    def connection_opened(self) -> None:
        with self._lock:
            self._connections += 1

    def request_started(self) -> None:
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            if self._in_flight > self._peak:
                self._peak = self._in_flight

    def request_parsed(self, method: str, resource: str) -> None:
        with self._lock:
            self._by_method[method] += 1
            self._attempts[(method, resource)] += 1

    def request_finished(self) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._lock.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no request is in flight; False if ``timeout`` (seconds) passed first."""
        with self._lock:
            return self._lock.wait_for(lambda: self._in_flight == 0, timeout)

    def responded(self, status: int) -> None:
        with self._lock:
            self._by_status[status] += 1

    def fault(self, name: str) -> None:
        """Count one delivered fault: ``throttled``, ``internal_errors``, ``resets``, ``truncated``,
        ``slow_bodies`` or ``upstream_errors``."""
        with self._lock:
            self._faults[name] += 1

    def reset(self) -> None:
        """Zero everything; the in-flight peak restarts from the requests in flight now."""
        with self._lock:
            self._zero()

    def snapshot(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(
                requests=self._requests,
                connections=self._connections,
                in_flight=self._in_flight,
                in_flight_peak=self._peak,
                by_status=dict(self._by_status),
                by_method=dict(self._by_method),
                throttled=self._faults["throttled"],
                internal_errors=self._faults["internal_errors"],
                resets=self._faults["resets"],
                truncated=self._faults["truncated"],
                slow_bodies=self._faults["slow_bodies"],
                upstream_errors=self._faults["upstream_errors"],
                attempts=dict(self._attempts),
            )
