"""Every invalid option fails at construction, naming the option and what is accepted."""

from __future__ import annotations

import pytest

from s3pool_plugins import ConfigurationError, OperationsPool, PoolConfig, RetryBudget, RetryPolicy


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -3}, "concurrency"),
        ({"concurrency": 2.5}, "concurrency"),
        ({"concurrency": "10"}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": "Auto"}, "concurrency"),
        ({"concurrency": 4, "auto_tuning": {"max_concurrency": 8}}, "auto_tuning"),
        ({"concurrency": "auto", "auto_tuning": 5}, "auto_tuning"),
        ({"concurrency": "auto", "auto_tuning": {"max_concurency": 8}}, "auto_tuning.max_concurency"),
        ({"concurrency": "auto", "auto_tuning": {"min_concurrency": 0}}, "auto_tuning.min_concurrency"),
        (
            {"concurrency": "auto", "auto_tuning": {"min_concurrency": 9, "max_concurrency": 8}},
            "auto_tuning.max_concurrency",
        ),
        ({"concurrency": "auto", "auto_tuning": {"initial_concurrency": 99}}, "auto_tuning.initial_concurrency"),
        ({"concurrency": "auto", "auto_tuning": {"target_latency": 0}}, "auto_tuning.target_latency"),
        ({"concurrency": "auto", "auto_tuning": {"target_memory_percent": 75}}, "auto_tuning.target_memory_percent"),
        ({"concurrency": "auto", "auto_tuning": {"adjustment_interval": -1}}, "auto_tuning.adjustment_interval"),
        ({"concurrency": "auto", "auto_tuning": {"scope": "key"}}, "auto_tuning.scope"),
        ({"concurrency": "auto", "auto_tuning": {"prefix_depth": 0}}, "auto_tuning.prefix_depth"),
        ({"retries": -1}, "retries"),
        ({"retries": "3"}, "retries"),
        ({"retry_delay": -1}, "retry_delay"),
        ({"max_retry_delay": float("inf")}, "max_retry_delay"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -5}, "timeout"),
        ({"timeout": "30"}, "timeout"),
        ({"queue_timeout": 0}, "queue_timeout"),
        ({"priority": float("nan")}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"aging_rate": -0.5}, "aging_rate"),
        ({"max_queue": 0}, "max_queue"),
        ({"queue_full": "drop"}, "queue_full"),
        ({"retryable_errors": "SlowDown"}, "retryable_errors"),
        ({"retry_budget": 500}, "retry_budget"),
        ({"retry_policy": {"retries": 3}}, "retry_policy"),
        ({"retry_policy": RetryPolicy(), "retries": 2}, "retry_policy"),
        ({"enabled": "yes"}, "enabled"),
        ({"plugins": "myplugin"}, "plugins"),
        ({"load_entrypoints": 1}, "load_entrypoints"),
        ({"name": ""}, "name"),
        ({"seed": 1.5}, "seed"),
        ({"clock": 5}, "clock"),
        ({"concurency": 5}, "concurency"),
    ],
)
def test_invalid_option_raises_naming_it(options: dict[str, object], option: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        OperationsPool(**options)
    assert info.value.option == option
    message = str(info.value)
    assert repr(option) in message and "accepted:" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_auto_concurrency_starts_at_the_initial_limit_with_the_seed_defaults() -> None:
    pool = OperationsPool(concurrency="auto", auto_tuning={"min_concurrency": 2, "max_concurrency": 40})
    try:
        assert pool.concurrency == 10
        assert pool.auto_tuning.max_concurrency == 40
        assert pool.config.as_dict()["auto_tuning"]["min_concurrency"] == 2
        assert pool.limit_history() == []
    finally:
        pool.shutdown()
    small = OperationsPool(concurrency="auto", auto_tuning={"max_concurrency": 4})
    assert small.concurrency == 4
    small.shutdown()


def test_valid_config_round_trip() -> None:
    config = PoolConfig(concurrency=4, retries=5, retry_delay=0.2, max_retry_delay=2, timeout=None, max_queue=10)
    assert config.policy.retries == 5
    assert config.policy.retry_delay == 0.2
    assert config.as_dict()["timeout"] is None
    pool = OperationsPool(config=config)
    assert pool.concurrency == 4
    assert pool.retry_policy.attempts == 6
    pool.shutdown()


def test_config_and_options_together_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="config"):
        OperationsPool(PoolConfig(), concurrency=3)


def test_retry_budget_choices() -> None:
    assert OperationsPool(load_entrypoints=False).retry_budget is not None
    assert OperationsPool(retry_budget=False, load_entrypoints=False).retry_budget is None
    shared = RetryBudget(capacity=50)
    a = OperationsPool(retry_budget=shared, load_entrypoints=False)
    b = OperationsPool(retry_budget=shared, load_entrypoints=False)
    assert a.retry_budget is b.retry_budget is shared
    for pool in (a, b):
        pool.shutdown()


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"priority": "x"}, "priority"),
        ({"timeout": -1}, "timeout"),
        ({"queue_timeout": "1"}, "queue_timeout"),
        ({"retries": -2}, "retries"),
        ({"metadata": ["a"]}, "metadata"),
        ({"name": 3}, "name"),
    ],
)
def test_invalid_task_options_name_the_option(make_pool, options: dict[str, object], option: str) -> None:
    pool = make_pool()
    with pytest.raises(ConfigurationError) as info:
        pool.options(**options)
    assert info.value.option == option
    with pytest.raises(TypeError):
        pool.options(bogus=1)


def test_set_concurrency_validates(make_pool) -> None:
    pool = make_pool()
    for bad in (0, -1, 1.5, "3", None):
        with pytest.raises(ConfigurationError, match="concurrency"):
            pool.set_concurrency(bad)


def test_auto_tuning_from_the_environment_names_the_variable() -> None:
    from s3pool_plugins import config_from_environment

    config = config_from_environment(
        {"S3POOL_CONCURRENCY": "AUTO", "S3POOL_AUTO_MAX_CONCURRENCY": "40", "S3POOL_AUTO_TARGET_LATENCY": "none"}
    )
    assert config.adaptive is not None and config.adaptive.max_concurrency == 40
    assert config.adaptive.target_latency is None
    with pytest.raises(ConfigurationError) as info:
        config_from_environment({"S3POOL_CONCURRENCY": "auto", "S3POOL_AUTO_SCOPE": "keys"})
    assert info.value.option == "S3POOL_AUTO_SCOPE"
    with pytest.raises(ConfigurationError) as info:
        config_from_environment({"S3POOL_AUTO_MIN_CONCURRENCY": "2"})
    assert info.value.option == "S3POOL_AUTO_MIN_CONCURRENCY" and "S3POOL_CONCURRENCY=auto" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        config_from_environment({"S3POOL_AUTO_SCOPES": "bucket"})
    assert info.value.option == "S3POOL_AUTO_SCOPES" and "S3POOL_AUTO_SCOPE" in str(info.value)
