"""Retry decisions: an immutable :class:`RetryPolicy` and a shared :class:`RetryBudget`.

The policy answers three questions, in the spirit of urllib3's ``Retry``:
what kind of error is this (:meth:`RetryPolicy.classify`), may this task try
again (:meth:`RetryPolicy.is_retry`), and how long should it wait first
(:meth:`RetryPolicy.backoff`). The budget is a token bucket shared by a whole
pool, so that during an outage retries stop multiplying the load: each retry
spends tokens, each success returns some.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Union

from ..errors import ConfigurationError, TaskTimeout
from .validation import count, seconds

ErrorMatcher = Union[str, type[BaseException]]  # noqa: UP007 - a runtime alias on 3.10
"""An error name or code (compared to the class name, ``name`` and ``code``), or an exception type."""

THROTTLING_ERROR_NAMES: frozenset[str] = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "BandwidthLimitExceeded",
        "SlowDownRead",
        "SlowDownWrite",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "TransactionInProgressException",
        "429",
    }
)
"""Names and codes that mean "the service asks us to slow down"."""

_DEFAULT_MATCHERS: list[ErrorMatcher] = [
    ConnectionError,
    TimeoutError,
    "NetworkingError",
    "TimeoutError",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "InternalError",
    "ECONNRESET",
    "ETIMEDOUT",
    "EPIPE",
    "500",
    "502",
    "503",
    "504",
]
DEFAULT_RETRYABLE_ERRORS: frozenset[ErrorMatcher] = frozenset(_DEFAULT_MATCHERS) | THROTTLING_ERROR_NAMES
"""Retryable by default: connection and timeout errors, throttling, and 5xx-style names."""


@dataclass(frozen=True)
class ErrorClassification:
    """The verdict on one failed attempt.

    ``retryable``: another attempt may succeed. ``throttling``: the service
    asked for less load (adaptive limits react to it). ``retry_after``: the
    service named a delay in seconds, used instead of the computed backoff.
    """

    retryable: bool
    throttling: bool = False
    retry_after: float | None = None
    reason: str = ""


NOT_RETRYABLE = ErrorClassification(False, reason="not retryable")
TRANSIENT = ErrorClassification(True, reason="transient")
THROTTLING = ErrorClassification(True, throttling=True, reason="throttling")

Classifier = Callable[[BaseException], ErrorClassification | None]
"""Custom classification: return a verdict, or None to fall back to the policy's rules."""


def error_names(error: BaseException) -> set[str]:
    """Every name the matcher compares: class names in the MRO, ``name`` and ``code``."""
    names = {cls.__name__ for cls in type(error).__mro__}
    for attribute in ("name", "code"):
        value = getattr(error, attribute, None)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            names.add(str(value))
    return names


def _validate_matchers(value: object) -> frozenset[ErrorMatcher]:
    accepted = "an iterable of error names (str) and exception classes"
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigurationError("retryable_errors", accepted, value)
    matchers: set[ErrorMatcher] = set()
    for item in value:
        if (isinstance(item, str) and item) or (isinstance(item, type) and issubclass(item, BaseException)):
            matchers.add(item)
        else:
            raise ConfigurationError("retryable_errors", accepted, item)
    return frozenset(matchers)


MAX_RETRIES = 10_000
"""The most retries a task may get: far more than any backoff schedule needs."""


@dataclass(frozen=True)
class RetryPolicy:
    """How many times a task is tried and how long it waits in between.

    - ``retries``: retries after the first attempt (``attempts == retries + 1``),
      an int from 0 to :data:`MAX_RETRIES`.
    - ``retry_delay``: backoff base in seconds (0 to 7 days, as ``max_retry_delay``). Retry ``n`` (0-based) waits a
      uniformly random time in ``[0, min(max_retry_delay, retry_delay * 2**n)]``
      ("full jitter"), unless the error carried a ``retry_after``.
    - ``max_retry_delay``: the cap of that window, in seconds.
    - ``retryable_errors``: matched against the exception type (``isinstance``)
      and against the class names, ``name`` and ``code`` of the error.
    - ``throttling_errors``: names that mark a retryable error as throttling.
    - ``classifier``: consulted first; returns a verdict or None.

    The policy is immutable; :meth:`replace` returns a changed copy.
    """

    retries: int = 3
    retry_delay: float = 1.0
    max_retry_delay: float = 20.0
    retryable_errors: frozenset[ErrorMatcher] = DEFAULT_RETRYABLE_ERRORS
    throttling_errors: frozenset[str] = THROTTLING_ERROR_NAMES
    classifier: Classifier | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        count("retries", self.retries, 0, MAX_RETRIES)
        object.__setattr__(self, "retry_delay", seconds("retry_delay", self.retry_delay, open_low=False))
        object.__setattr__(self, "max_retry_delay", seconds("max_retry_delay", self.max_retry_delay, open_low=False))
        object.__setattr__(self, "retryable_errors", _validate_matchers(self.retryable_errors))
        throttling: object = self.throttling_errors
        if (
            isinstance(throttling, (str, bytes))
            or not isinstance(throttling, Iterable)
            or not all(isinstance(n, str) for n in throttling)
        ):
            raise ConfigurationError("throttling_errors", "an iterable of error names (str)", self.throttling_errors)
        object.__setattr__(self, "throttling_errors", frozenset(self.throttling_errors))
        if self.classifier is not None and not callable(self.classifier):
            raise ConfigurationError("classifier", "a callable(error) -> ErrorClassification | None", self.classifier)

    @property
    def attempts(self) -> int:
        """The largest number of attempts a task gets: ``retries + 1``."""
        return self.retries + 1

    def replace(self, **changes: object) -> RetryPolicy:
        """A copy with ``changes`` applied (validated like the constructor)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def classify(self, error: BaseException) -> ErrorClassification:
        """The verdict for ``error``: the custom classifier first, then the rules."""
        if self.classifier is not None:
            verdict = self.classifier(error)
            if verdict is not None:
                return verdict
        return self.default_classify(error)

    def default_classify(self, error: BaseException) -> ErrorClassification:
        """The rule-based verdict, ignoring the custom classifier."""
        if not isinstance(error, Exception):
            return NOT_RETRYABLE
        names = error_names(error)
        matched = False
        for matcher in self.retryable_errors:
            if isinstance(matcher, str):
                if matcher in names:
                    matched = True
                    break
            elif isinstance(error, matcher):
                matched = True
                break
        if not matched:
            return NOT_RETRYABLE
        if names & self.throttling_errors:
            return THROTTLING
        return TRANSIENT

    def is_retry(self, attempts_made: int, verdict: ErrorClassification) -> bool:
        """True if a task that has made ``attempts_made`` attempts may try again."""
        return verdict.retryable and attempts_made < self.attempts

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (0 for the first retry)."""
        window = min(self.max_retry_delay, self.retry_delay * (2.0 ** min(retry_number, 62)))
        return (rng or random).uniform(0.0, window)

    def delay_for(self, retry_number: int, verdict: ErrorClassification, rng: random.Random | None = None) -> float:
        """The backoff, or the service's ``retry_after`` (capped) when it gave one."""
        if verdict.retry_after is not None and verdict.retry_after >= 0:
            return min(float(verdict.retry_after), self.max_retry_delay)
        return self.backoff(retry_number, rng)


class RetryBudget:
    """A token bucket that bounds retries across a whole pool.

    Defaults follow AWS's "standard" retry mode: 500 tokens, a retry costs 5
    (10 after a timeout), a task that succeeds returns what its retries took,
    and a first-try success adds ``success_reward`` (1); each is an int up to
    :data:`~.validation.MAX_COUNT` (``capacity`` >= 1). When the bucket cannot
    pay for a retry the task fails at once with its last error, so an outage
    fails fast instead of multiplying the load. Thread-safe.
    """

    def __init__(
        self,
        capacity: int = 500,
        retry_cost: int = 5,
        timeout_retry_cost: int = 10,
        success_reward: int = 1,
    ) -> None:
        count("retry_budget.capacity", capacity)
        count("retry_budget.retry_cost", retry_cost, 0)
        count("retry_budget.timeout_retry_cost", timeout_retry_cost, 0)
        count("retry_budget.success_reward", success_reward, 0)
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.timeout_retry_cost = timeout_retry_cost
        self.success_reward = success_reward
        self._tokens = capacity
        self._lock = threading.Lock()

    @property
    def tokens(self) -> int:
        """Tokens left now."""
        return self._tokens

    def cost_of(self, error: BaseException) -> int:
        """What retrying after ``error`` costs: timeouts (by type, or "Timeout" in a name or code) cost more."""
        if isinstance(error, (TaskTimeout, TimeoutError)) or any("Timeout" in name for name in error_names(error)):
            return self.timeout_retry_cost
        return self.retry_cost

    def try_acquire(self, error: BaseException) -> int | None:
        """Take the cost of one retry after ``error``; None if the bucket cannot pay."""
        cost = self.cost_of(error)
        with self._lock:
            if self._tokens < cost:
                return None
            self._tokens -= cost
        return cost

    def on_success(self, spent: int) -> None:
        """Refund what a now-successful task spent, or reward a first-try success."""
        if spent == 0 and self._tokens >= self.capacity:
            return
        amount = spent if spent > 0 else self.success_reward
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + amount)

    def __repr__(self) -> str:
        return f"RetryBudget(tokens={self._tokens}/{self.capacity})"
