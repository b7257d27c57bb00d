"""Every invalid option fails at construction, naming the option and what is accepted."""

from __future__ import annotations

import pickle
from dataclasses import fields

import pytest

from s3pool_plugins import (
    AutoTuning,
    ConfigurationError,
    OperationsPool,
    PoolConfig,
    RetryBudget,
    RetryPolicy,
    config_from_environment,
)
from s3pool_plugins.core.environment import install_options_from_environment


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


# -- accepted ranges: nothing accepted may break the pool later ------------------

DAYS_7 = 7 * 24 * 3600
HUGE = 10**400  # beyond float range


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"queue_timeout": 1e10}, "queue_timeout"),
        ({"timeout": 1e10}, "timeout"),
        ({"timeout": DAYS_7 + 1}, "timeout"),
        ({"retry_delay": 1e10}, "retry_delay"),
        ({"max_retry_delay": 1e10}, "max_retry_delay"),
        ({"concurrency": "auto", "auto_tuning": {"target_latency": 1e10}}, "auto_tuning.target_latency"),
        ({"concurrency": "auto", "auto_tuning": {"adjustment_interval": 1e10}}, "auto_tuning.adjustment_interval"),
        ({"monitoring": {"window": 1e10}}, "monitoring.window"),
        ({"monitoring": {"memory_interval": 1e10}}, "monitoring.memory_interval"),
    ],
)
def test_seconds_beyond_seven_days_are_refused_naming_the_range(options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PoolConfig(load_entrypoints=False, **options)
    assert info.value.key == info.value.option == key
    assert "<= 604800 (7 days)" in str(info.value)


def test_seconds_up_to_seven_days_are_accepted() -> None:
    config = PoolConfig(timeout=DAYS_7, queue_timeout=float(DAYS_7), retry_delay=DAYS_7, max_retry_delay=DAYS_7)
    assert (config.timeout, config.queue_timeout, config.policy.max_retry_delay) == (DAYS_7, DAYS_7, DAYS_7)


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: PoolConfig(retries=HUGE), "retries"),
        (lambda: PoolConfig(timeout=HUGE), "timeout"),
        (lambda: PoolConfig(queue_timeout=-HUGE), "queue_timeout"),
        (lambda: PoolConfig(priority=HUGE), "priority"),
        (lambda: PoolConfig(aging_rate=HUGE), "aging_rate"),
        (lambda: PoolConfig(tenants={"etl": HUGE}), "tenants"),
        (lambda: PoolConfig(monitoring={"slices": HUGE}), "monitoring.slices"),
        (lambda: PoolConfig(monitoring={"task_history": HUGE}), "monitoring.task_history"),
        (lambda: PoolConfig(concurrency=HUGE), "concurrency"),
        (lambda: PoolConfig(max_queue=HUGE), "max_queue"),
        (lambda: RetryBudget(capacity=HUGE), "retry_budget.capacity"),
        (lambda: RetryPolicy(retry_delay=HUGE), "retry_delay"),
        (
            lambda: PoolConfig(concurrency="auto", auto_tuning={"target_memory_percent": HUGE}),
            "auto_tuning.target_memory_percent",
        ),
        (lambda: PoolConfig(concurrency="auto", auto_tuning={"min_concurrency": 2**63}), "auto_tuning.min_concurrency"),
        (lambda: PoolConfig(concurrency="auto", auto_tuning={"min_concurrency": HUGE}), "auto_tuning.min_concurrency"),
    ],
)
def test_ints_beyond_float_range_are_refused_naming_the_option(build, key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        build()
    assert info.value.key == key
    assert "digits>" in str(info.value) or "9223372036854775808" in str(info.value)


def test_task_options_refuse_huge_values_naming_the_option(make_pool) -> None:
    pool = make_pool()
    for option, value in (("priority", HUGE), ("timeout", 1e10), ("queue_timeout", HUGE), ("retries", HUGE)):
        with pytest.raises(ConfigurationError) as info:
            pool.options(**{option: value})
        assert info.value.key == option


@pytest.mark.parametrize(
    ("monitoring", "key"),
    [
        ({"relative_error": 1e-320}, "monitoring.relative_error"),
        ({"relative_error": 0.5}, "monitoring.relative_error"),
        ({"window": 1e-320}, "monitoring.window"),
        ({"window": 0.5}, "monitoring.window"),
        ({"slices": 1001}, "monitoring.slices"),
    ],
)
def test_monitoring_settings_that_would_break_metrics_are_refused(monitoring: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PoolConfig(monitoring=monitoring)
    assert info.value.key == key


def test_monitoring_at_its_bounds_measures(make_pool) -> None:
    """The extreme accepted settings still give metrics (no division by zero, no overflow)."""
    for monitoring in (
        {"mode": "full", "relative_error": 0.0001, "window": 1, "slices": 1000},
        {"mode": "full", "relative_error": 0.4999, "window": DAYS_7, "slices": 1, "memory_interval": DAYS_7},
    ):
        pool = make_pool(monitoring=monitoring)
        assert [pool.submit(pow, 2, n).result(timeout=10) for n in range(5)] == [1, 2, 4, 8, 16]
        metrics = pool.metrics()
        assert metrics.window_count == 5 and metrics.execution.p99 is not None


def test_min_concurrency_above_the_maximum_names_itself_in_the_users_terms() -> None:
    with pytest.raises(ConfigurationError) as info:
        PoolConfig(concurrency="auto", auto_tuning={"min_concurrency": 100})
    error = info.value
    assert error.option == "auto_tuning.min_concurrency" and error.mentions == ("auto_tuning.max_concurrency",)
    assert error.accepted == "an int <= auto_tuning.max_concurrency (64)"
    with pytest.raises(ConfigurationError) as info:
        config_from_environment({"S3POOL_CONCURRENCY": "auto", "S3POOL_AUTO_MIN_CONCURRENCY": "100"})
    assert info.value.option == "S3POOL_AUTO_MIN_CONCURRENCY" and info.value.key == "auto_tuning.min_concurrency"
    assert info.value.accepted == "an int <= S3POOL_AUTO_MAX_CONCURRENCY (64)"
    with pytest.raises(ConfigurationError) as info:
        PoolConfig(concurrency="auto", auto_tuning={"min_concurrency": 50, "max_concurrency": 20})
    assert info.value.option == "auto_tuning.max_concurrency"
    assert info.value.accepted == "an int >= auto_tuning.min_concurrency (50)"


def test_an_error_can_be_spelled_in_a_command_lines_terms() -> None:
    """What a command line does: name its own flags for the option and for the options the message mentions."""
    flags = {"auto_tuning.min_concurrency": "--min-concurrency", "auto_tuning.max_concurrency": "--max-concurrency"}
    with pytest.raises(ConfigurationError) as info:
        PoolConfig(concurrency="auto", auto_tuning={"min_concurrency": 50, "max_concurrency": 20})
    renamed = info.value.renamed(flags.__getitem__)
    assert (
        str(renamed) == "invalid value for option '--max-concurrency': 20; accepted: an int >= --min-concurrency (50)"
    )
    assert (renamed.key, renamed.got, renamed.mentions) == ("auto_tuning.max_concurrency", 20, info.value.mentions)
    with pytest.raises(ConfigurationError) as info:
        config_from_environment({"S3POOL_AUTO_SCOPE": "bucket"})
    assert info.value.accepted == "set only together with S3POOL_CONCURRENCY=auto"
    assert info.value.renamed(
        {"auto_tuning.scope": "--auto-scope", "concurrency": "--concurrency"}.__getitem__
    ).accepted == ("set only together with --concurrency=auto")


def test_configuration_errors_pickle_and_never_fail_to_print() -> None:
    error = ConfigurationError(
        "auto_tuning.max_concurrency", "an int >= {0} (5)", 2, mentions=("auto_tuning.min_concurrency",)
    )
    copy = pickle.loads(pickle.dumps(error.renamed(str.upper)))
    assert (copy.option, copy.key, copy.accepted) == (
        "AUTO_TUNING.MAX_CONCURRENCY",
        "auto_tuning.max_concurrency",
        "an int >= AUTO_TUNING.MIN_CONCURRENCY (5)",
    )
    assert "<an int of about 5001 digits>" in str(ConfigurationError("retries", "an int", 10**5000))
    assert len(str(ConfigurationError("name", "a str", "x" * 10_000))) < 300


def test_every_auto_tuning_field_has_a_variable() -> None:
    texts = {
        "min_concurrency": "2",
        "max_concurrency": "40",
        "initial_concurrency": "3",
        "target_latency": "0.5",
        "target_memory_percent": "0.5",
        "adjustment_interval": "2",
        "scope": "prefix",
        "prefix_depth": "3",
        "max_partitions": "5",
    }
    assert set(texts) == {field.name for field in fields(AutoTuning)}
    environment = {"S3POOL_CONCURRENCY": "auto", **{f"S3POOL_AUTO_{k.upper()}": v for k, v in texts.items()}}
    assert config_from_environment(environment).adaptive == AutoTuning(
        min_concurrency=2,
        max_concurrency=40,
        initial_concurrency=3,
        target_latency=0.5,
        target_memory_percent=0.5,
        adjustment_interval=2,
        scope="prefix",
        prefix_depth=3,
        max_partitions=5,
    )


def test_an_unknown_variable_suggests_the_closest_known_one() -> None:
    with pytest.raises(ConfigurationError) as info:
        config_from_environment({"S3POOL_RETRIE": "3"})
    assert info.value.option == "S3POOL_RETRIE"
    assert info.value.unknown and info.value.suggestion == "S3POOL_RETRIES"
    assert info.value.accepted.startswith("one of the variables S3POOL_ENABLED")
    assert str(info.value).startswith("unknown option 'S3POOL_RETRIE' (did you mean 'S3POOL_RETRIES'?); accepted:")
    with pytest.raises(ConfigurationError) as info:
        config_from_environment({"S3POOL_AUTO_MAXPARTITIONS": "3"})
    assert info.value.suggestion == "S3POOL_AUTO_MAX_PARTITIONS"
    with pytest.raises(ConfigurationError) as info:
        config_from_environment({"S3POOL_ZZZZZZZZZZZZZ": "3"})
    assert info.value.unknown and info.value.suggestion is None
    assert info.value.accepted.startswith("one of the variables")


@pytest.mark.parametrize(
    ("environment", "variable"),
    [
        ({"S3POOL_QUEUE_TIMEOUT": "1e10"}, "S3POOL_QUEUE_TIMEOUT"),
        ({"S3POOL_RETRIES": "9" * 400}, "S3POOL_RETRIES"),
        ({"S3POOL_RETRIES": "9" * 5000}, "S3POOL_RETRIES"),
        ({"S3POOL_PRIORITY": "1" + "0" * 400}, "S3POOL_PRIORITY"),
        ({"S3POOL_MONITORING": "loud"}, "S3POOL_MONITORING"),
        ({"S3POOL_CONCURRENCY": "auto", "S3POOL_AUTO_MIN_CONCURRENCY": str(2**63)}, "S3POOL_AUTO_MIN_CONCURRENCY"),
        ({"S3POOL_BODY_IDLE_TIMEOUT": "0"}, "S3POOL_BODY_IDLE_TIMEOUT"),
        ({"S3POOL_BODY_IDLE_TIMEOUT": "-5"}, "S3POOL_BODY_IDLE_TIMEOUT"),
        ({"S3POOL_BODY_IDLE_TIMEOUT": "soon"}, "S3POOL_BODY_IDLE_TIMEOUT"),
        ({"S3POOL_BODY_IDLE_TIMEOUT": "inf"}, "S3POOL_BODY_IDLE_TIMEOUT"),
        ({"S3POOL_BODY_IDLE_TIMEOUT": "1e9"}, "S3POOL_BODY_IDLE_TIMEOUT"),
    ],
)
def test_bad_variables_are_named(environment: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        config_from_environment(environment)
    assert info.value.option == variable


def test_the_body_idle_bound_is_an_install_option_from_its_variable() -> None:
    assert install_options_from_environment({"S3POOL_RETRIES": "2"}) == {}  # unset: install keeps its default
    assert install_options_from_environment({"S3POOL_BODY_IDLE_TIMEOUT": " 12.5 "}) == {"body_idle_timeout": 12.5}
    assert config_from_environment({"S3POOL_BODY_IDLE_TIMEOUT": "12.5"}) == PoolConfig()  # not a pool option
    for text in ("0", "soon", "nan", str(7 * 24 * 3600 + 1)):
        with pytest.raises(ConfigurationError) as info:
            install_options_from_environment({"S3POOL_BODY_IDLE_TIMEOUT": text})
        assert (info.value.option, info.value.key, info.value.got) == (
            "S3POOL_BODY_IDLE_TIMEOUT",
            "body_idle_timeout",
            text,
        )
        assert info.value.accepted == "a number of seconds > 0 and <= 604800 (7 days)"
    with pytest.raises(ConfigurationError) as info:
        config_from_environment({"S3POOL_BODY_IDLE_TIMOUT": "5"})
    assert info.value.suggestion == "S3POOL_BODY_IDLE_TIMEOUT"


def test_misspelled_fields_and_task_options_suggest_the_closest(make_pool) -> None:
    with pytest.raises(ConfigurationError) as info:
        PoolConfig(concurrency="auto", auto_tuning={"max_concurency": 8})
    assert info.value.option == "auto_tuning.max_concurency"
    assert info.value.suggestion == "auto_tuning.max_concurrency"
    assert info.value.accepted.startswith("one of the fields")
    with pytest.raises(ConfigurationError) as info:
        PoolConfig(monitoring={"windows": 30})
    assert info.value.suggestion == "monitoring.window"
    with pytest.raises(ConfigurationError) as info:
        make_pool().options(timout=5)
    assert info.value.option == "timout" and info.value.suggestion == "timeout"
    assert "did you mean 'timeout'?" in str(info.value)


def test_a_misspelled_pool_keyword_suggests_the_closest_option() -> None:
    with pytest.raises(ConfigurationError) as info:
        OperationsPool(concurency=4)
    assert info.value.unknown and info.value.option == "concurency"
    assert info.value.suggestion == "concurrency"


def test_set_concurrency_refuses_a_limit_above_the_accepted_range(make_pool) -> None:
    pool = make_pool(concurrency=2)
    with pytest.raises(ConfigurationError) as info:
        pool.set_concurrency(2**63)
    assert info.value.option == "concurrency" and info.value.accepted == "an int >= 1 and <= 100,000"
    assert pool.stats().limit == 2
