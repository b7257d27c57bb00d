"""RetryPolicy classification and backoff; RetryBudget accounting."""

from __future__ import annotations

import random

import pytest

from s3pool_plugins import (
    NOT_RETRYABLE,
    ConfigurationError,
    ErrorClassification,
    RetryBudget,
    RetryPolicy,
    TaskTimeout,
)


class CodedError(Exception):
    def __init__(self, code: object) -> None:
        super().__init__(f"code {code}")
        self.code = code


class NamedError(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class SlowDown(Exception):
    pass


def test_classification_by_type_name_and_code() -> None:
    policy = RetryPolicy()
    assert policy.classify(ConnectionResetError()).retryable
    assert policy.classify(TimeoutError()).retryable
    assert policy.classify(TaskTimeout("t")).retryable
    assert policy.classify(CodedError("InternalError")).retryable
    assert policy.classify(CodedError(503)).retryable
    assert policy.classify(NamedError("NetworkingError")).retryable
    assert not policy.classify(ValueError()).retryable
    assert not policy.classify(CodedError("NoSuchKey")).retryable
    assert not policy.classify(CodedError(True)).retryable
    assert not policy.classify(KeyboardInterrupt()).retryable


def test_throttling_is_told_apart_from_transient() -> None:
    policy = RetryPolicy()
    slow = policy.classify(SlowDown())
    assert slow.retryable and slow.throttling
    assert policy.classify(CodedError("ThrottlingException")).throttling
    transient = policy.classify(CodedError("InternalError"))
    assert transient.retryable and not transient.throttling


def test_custom_retryable_errors_replace_the_defaults() -> None:
    policy = RetryPolicy(retryable_errors=["NoSuchKey", KeyError])
    assert policy.classify(CodedError("NoSuchKey")).retryable
    assert policy.classify(KeyError("k")).retryable
    assert not policy.classify(ConnectionError()).retryable


def test_custom_classifier_wins_and_may_defer() -> None:
    def classifier(error: BaseException) -> ErrorClassification | None:
        if isinstance(error, ValueError):
            return ErrorClassification(True, throttling=True, retry_after=2.5)
        if isinstance(error, ConnectionError):
            return NOT_RETRYABLE
        return None

    policy = RetryPolicy(classifier=classifier)
    verdict = policy.classify(ValueError())
    assert verdict.throttling and verdict.retry_after == 2.5
    assert not policy.classify(ConnectionError()).retryable
    assert policy.classify(TimeoutError()).retryable  # deferred to the rules
    assert policy.delay_for(0, verdict) == 2.5
    assert RetryPolicy(max_retry_delay=1.0, classifier=classifier).delay_for(0, verdict) == 1.0


def test_is_retry_counts_attempts() -> None:
    policy = RetryPolicy(retries=2)
    verdict = policy.classify(ConnectionError())
    assert policy.attempts == 3
    assert policy.is_retry(1, verdict)
    assert policy.is_retry(2, verdict)
    assert not policy.is_retry(3, verdict)
    assert not policy.is_retry(1, NOT_RETRYABLE)


def test_full_jitter_backoff_stays_in_its_window() -> None:
    policy = RetryPolicy(retry_delay=0.5, max_retry_delay=3.0)
    rng = random.Random(1)
    for retry in range(8):
        window = min(3.0, 0.5 * 2**retry)
        samples = [policy.backoff(retry, rng) for _ in range(300)]
        assert all(0 <= s <= window for s in samples)
        assert max(samples) > window * 0.8  # really spread over the window
        assert min(samples) < window * 0.2
    assert policy.backoff(10_000, rng) <= 3.0  # no overflow for huge retry numbers


def test_policy_is_immutable_and_replace_validates() -> None:
    policy = RetryPolicy(retries=1)
    with pytest.raises(AttributeError):
        policy.retries = 5  # type: ignore[misc]
    assert policy.replace(retries=4).retries == 4
    with pytest.raises(ConfigurationError, match="retries"):
        policy.replace(retries=-1)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"retries": True}, "retries"),
        ({"retry_delay": -0.1}, "retry_delay"),
        ({"retry_delay": float("nan")}, "retry_delay"),
        ({"max_retry_delay": "1"}, "max_retry_delay"),
        ({"retryable_errors": "SlowDown"}, "retryable_errors"),
        ({"retryable_errors": [3]}, "retryable_errors"),
        ({"retryable_errors": [int]}, "retryable_errors"),
        ({"throttling_errors": "SlowDown"}, "throttling_errors"),
        ({"classifier": 5}, "classifier"),
    ],
)
def test_invalid_policy_options_name_the_option(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigurationError, match=repr(option)) as info:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert info.value.option == option
    assert "accepted" in str(info.value)


def test_budget_defaults_follow_aws_standard_mode() -> None:
    budget = RetryBudget()
    assert (budget.capacity, budget.retry_cost, budget.timeout_retry_cost) == (500, 5, 10)
    assert budget.try_acquire(ConnectionError()) == 5
    assert budget.try_acquire(TaskTimeout("t")) == 10
    assert budget.tokens == 485
    budget.on_success(15)  # the task that spent 15 succeeded: refund
    assert budget.tokens == 500
    budget.on_success(0)  # first-try success cannot overfill
    assert budget.tokens == 500


def test_budget_runs_dry_and_refills() -> None:
    budget = RetryBudget(capacity=12, retry_cost=5)
    assert budget.try_acquire(ConnectionError()) == 5
    assert budget.try_acquire(ConnectionError()) == 5
    assert budget.try_acquire(ConnectionError()) is None
    assert budget.tokens == 2
    for _ in range(3):
        budget.on_success(0)
    assert budget.tokens == 5
    assert budget.try_acquire(ConnectionError()) == 5


def test_first_try_rewards_refill_the_budget_up_to_its_capacity() -> None:
    budget = RetryBudget(capacity=10, retry_cost=5, success_reward=2)
    budget.try_acquire(ConnectionError())
    assert budget.tokens == 5
    budget.on_success(0)
    budget.on_success(0)
    assert budget.tokens == 9
    budget.on_success(0)
    assert budget.tokens == 10


def test_pool_refunds_the_budget_after_first_try_successes(make_pool) -> None:
    pool = make_pool(concurrency=2, retries=1, retry_budget=RetryBudget(capacity=20, retry_cost=5))
    flaky = iter([ConnectionError("once"), None])

    def work() -> str:
        error = next(flaky)
        if error is not None:
            raise error
        return "ok"

    assert pool.submit(work).result(5) == "ok"  # its retry cost 5, refunded on success
    assert pool.retry_budget.tokens == 20
    pool.retry_budget.try_acquire(ConnectionError())
    assert pool.retry_budget.tokens == 15
    for _ in range(5):
        pool.submit(lambda: None).result(5)  # first-try successes earn a token each
    assert pool.retry_budget.tokens == 20


def test_budget_validates() -> None:
    with pytest.raises(ConfigurationError, match="capacity"):
        RetryBudget(capacity=0)
