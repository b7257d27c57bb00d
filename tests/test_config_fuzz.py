"""Fuzzing every options parser: a bad value fails naming its option, a value accepted works.

Each test throws arbitrary values (huge ints, tiny and huge floats, nan, inf,
bools, strings, None, lists, dicts; arbitrary text for environment
variables) at one parser. The only acceptable failure is a
``ConfigurationError`` whose ``key`` names the option that got the value. A
configuration that is accepted must then work: a pool built from it runs a
task, answers ``stats()`` and ``metrics()``, and stops.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from s3pool_plugins import (
    AutoTuning,
    ConfigurationError,
    MonitoringConfig,
    OperationsPool,
    PoolConfig,
    QueueWaitTimeout,
    RetryBudget,
    RetryPolicy,
    TaskTimeout,
    config_from_environment,
)
from s3pool_plugins.core.environment import known_variables
from s3pool_plugins.core.validation import MAX_SECONDS

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EDGES: list[object] = [
    0,
    1,
    -1,
    2**31,
    2**53 + 1,
    2**63,
    2**64,
    10**15,
    10**15 + 1,
    10**400,
    -(10**400),
    0.0,
    -0.0,
    5e-324,
    1e-320,
    1e-300,
    1e-6,
    0.0001,
    0.4999,
    0.5,
    1.0,
    1e6,
    1e6 + 1,
    1e15,
    MAX_SECONDS,
    MAX_SECONDS + 1,
    1e10,
    1e308,
    math.inf,
    -math.inf,
    math.nan,
    True,
    False,
    None,
    "",
    "auto",
    "light",
    "full",
    "block",
    "pool",
    "prefix",
]

ANYTHING = st.one_of(
    st.sampled_from(EDGES),
    st.integers(),
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(),
    st.booleans(),
    st.text(max_size=8),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.tuples(st.floats()),
    st.binary(max_size=3),
)
"""Any value a caller might pass by mistake, with the boundaries of every range."""

PLAUSIBLE = st.one_of(
    st.integers(min_value=0, max_value=100),
    st.floats(min_value=0, max_value=10),
    st.sampled_from(["off", "light", "full", "pool", "bucket", "prefix", "block", "raise", 0.5, 1, 2]),
)
"""Values that are often valid, so that accepted configurations are exercised too."""

VALUES = ANYTHING | PLAUSIBLE


def _runs(pool: OperationsPool, *, fuzzing: bool = True) -> None:
    """The pool runs a task, reports, and stops idle: an accepted configuration works. Shuts ``pool`` down.

    The task makes one attempt (``retries=0``), so a fuzzed backoff of days is
    never waited for; a tiny fuzzed ``timeout`` may expire, which is that
    option working.
    """
    if fuzzing:
        event("accepted")
    try:
        future = pool.options(retries=0).submit(divmod, 7, 2)
        try:
            assert future.result(timeout=30) == (3, 1)
        except (TaskTimeout, QueueWaitTimeout):
            pass
        pool.stats()
        pool.metrics()
    finally:
        pool.shutdown(wait=True)
    stats = pool.stats()
    assert (stats.active, stats.queued) == (0, 0)


def _names(error: ConfigurationError, keys: Callable[[str], bool]) -> None:
    event("refused")
    assert keys(error.key), f"{error.key!r} is not the option at fault: {error}"
    assert repr(error.option) in str(error) and "accepted: " in str(error)


# -- values within the documented ranges: each must be accepted -----------------

SECONDS = st.floats(min_value=0, max_value=MAX_SECONDS, exclude_min=True)
SECONDS_OR_ZERO = st.floats(min_value=0, max_value=MAX_SECONDS)
PRIORITY = st.integers(min_value=-(10**15), max_value=10**15) | st.floats(min_value=-1e15, max_value=1e15)

VALID_MONITORING = st.fixed_dictionaries(
    {},
    optional={
        "mode": st.sampled_from(["off", "light", "full"]),
        "window": st.floats(min_value=1, max_value=MAX_SECONDS),
        "slices": st.integers(min_value=1, max_value=1000),
        "task_history": st.integers(min_value=1, max_value=10**9),
        "memory_interval": SECONDS,
        "relative_error": st.floats(min_value=0.0001, max_value=0.5, exclude_max=True),
    },
)


@st.composite
def _valid_auto_tuning(draw: st.DrawFn) -> dict[str, object]:
    tuning = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "target_latency": st.none() | SECONDS,
                "target_memory_percent": st.none() | st.floats(min_value=0, max_value=1, exclude_min=True),
                "adjustment_interval": SECONDS,
                "scope": st.sampled_from(["pool", "bucket", "prefix"]),
                "prefix_depth": st.integers(min_value=1, max_value=1024),
                "max_partitions": st.integers(min_value=1, max_value=10**9),
            },
        )
    )
    given = draw(st.sets(st.sampled_from(["min_concurrency", "max_concurrency", "initial_concurrency"])))
    high = draw(st.integers(min_value=1, max_value=100_000)) if "max_concurrency" in given else 64
    low = draw(st.integers(min_value=1, max_value=high)) if "min_concurrency" in given else 1
    bounds = {"min_concurrency": low, "max_concurrency": high, "initial_concurrency": draw(st.integers(low, high))}
    tuning.update({name: bounds[name] for name in given})
    return tuning


HEDGE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "delay": st.none() | st.floats(min_value=0.0, max_value=300.0, exclude_min=True),
    "quantile": st.floats(min_value=0.5, max_value=1.0, exclude_min=True, exclude_max=True),
    "min_samples": st.integers(min_value=1, max_value=10_000),
    "budget": st.floats(min_value=0.0, max_value=1.0, exclude_min=True),
    "burst": st.integers(min_value=1, max_value=10_000),
    "quiet": SECONDS,
}

VALID_POOL_OPTIONS: dict[str, st.SearchStrategy[object]] = {
    "enabled": st.booleans(),
    "concurrency": st.integers(min_value=1, max_value=100_000),
    "retries": st.integers(min_value=0, max_value=10_000),
    "retry_delay": SECONDS_OR_ZERO,
    "max_retry_delay": SECONDS_OR_ZERO,
    "retryable_errors": st.lists(st.text(min_size=1, max_size=5), max_size=3),
    "retry_budget": st.booleans(),
    "timeout": st.none() | SECONDS,
    "queue_timeout": st.none() | SECONDS,
    "priority": PRIORITY,
    "aging_rate": st.floats(min_value=0, max_value=1e6),
    "max_queue": st.none() | st.integers(min_value=1, max_value=10**9),
    "queue_full": st.sampled_from(["block", "raise"]),
    "monitoring": st.sampled_from(["off", "light", "full"]) | VALID_MONITORING,
    "tenants": st.none() | st.dictionaries(st.text(min_size=1, max_size=4), st.floats(min_value=1e-6, max_value=1e6)),
    "name": st.text(min_size=1, max_size=8),
    "seed": st.none() | st.integers(),
    "fleet_name": st.from_regex(r"[A-Za-z0-9._:-]{1,12}", fullmatch=True),
    "hedge": st.booleans() | st.none() | st.fixed_dictionaries({}, optional=HEDGE_FIELDS),
}


@st.composite
def _valid_pool_options(draw: st.DrawFn) -> dict[str, object]:
    options = draw(st.fixed_dictionaries({}, optional=VALID_POOL_OPTIONS))
    if draw(st.booleans()):
        options["concurrency"] = "auto"
        options["auto_tuning"] = draw(st.none() | _valid_auto_tuning())
    return options


def _either(valid: st.SearchStrategy[Any], fuzzed: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[bool, Any]]:
    """``(True, value)`` for a value of ``valid``, ``(False, value)`` for one of ``fuzzed``."""
    return st.tuples(st.just(True), valid) | st.tuples(st.just(False), fuzzed)


def _refused(error: ConfigurationError, valid: bool, keys: Callable[[str], bool]) -> None:
    assert not valid, f"a value within the documented ranges was refused: {error}"
    _names(error, keys)


# -- pool options ---------------------------------------------------------------

POOL_OPTIONS = [f.name for f in fields(PoolConfig) if f.name not in ("clock", "plugins", "load_entrypoints")]


def _pool_value(option: str) -> st.SearchStrategy[object]:
    specific: dict[str, st.SearchStrategy[object]] = {
        "tenants": st.dictionaries(st.sampled_from(["", "etl", "web"]) | st.integers(), VALUES, max_size=2),
        "monitoring": st.dictionaries(
            st.sampled_from([f.name for f in fields(MonitoringConfig)]) | st.text(max_size=4), VALUES, max_size=3
        ),
        "auto_tuning": st.dictionaries(
            st.sampled_from([f.name for f in fields(AutoTuning)]) | st.text(max_size=4), VALUES, max_size=3
        ),
        "retryable_errors": st.lists(st.sampled_from(["SlowDown", "", 3, None, ValueError, object]), max_size=3),
    }
    return VALUES | specific[option] if option in specific else VALUES


@st.composite
def _one_fuzzed_option(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    """Valid options, and one option (named) set to a fuzzed value."""
    options = draw(_valid_pool_options())
    option = draw(st.sampled_from(POOL_OPTIONS))
    if option == "concurrency":
        options.pop("auto_tuning", None)
    if option == "retry_policy":
        for name in ("retries", "retry_delay", "max_retry_delay", "retryable_errors"):
            options.pop(name, None)
    options[option] = draw(_pool_value(option))
    return option, options


@FUZZ
@given(drawn=_one_fuzzed_option())
def test_pool_options(drawn: tuple[str, dict[str, object]]) -> None:
    option, options = drawn
    try:
        pool = OperationsPool(load_entrypoints=False, **options)  # type: ignore[arg-type]
    except ConfigurationError as error:
        _names(error, lambda key: key.partition(".")[0] == option)
        return
    _runs(pool)


@settings(max_examples=60, deadline=None)
@given(options=_valid_pool_options())
def test_pool_options_within_the_documented_ranges_work(options: dict[str, object]) -> None:
    _runs(OperationsPool(load_entrypoints=False, **options))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def shared_pool() -> Iterator[OperationsPool]:
    pool = OperationsPool(load_entrypoints=False, concurrency=2, retry_delay=0.001, monitoring="full")
    yield pool
    _runs(pool, fuzzing=False)  # still works after every task the fuzzing gave it


VALID_TASK_OPTIONS: dict[str, st.SearchStrategy[object]] = {
    "priority": PRIORITY,
    "timeout": st.none() | SECONDS,
    "queue_timeout": st.none() | SECONDS,
    "retries": st.integers(min_value=0, max_value=10_000),
    "metadata": st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    "name": st.none() | st.text(max_size=5),
    "tenant": st.none() | st.text(min_size=1, max_size=5),
}


@FUZZ
@given(option=st.sampled_from(sorted(VALID_TASK_OPTIONS)), data=st.data())
def test_task_options(shared_pool: OperationsPool, option: str, data: st.DataObject) -> None:
    valid, value = data.draw(_either(VALID_TASK_OPTIONS[option], VALUES))
    try:
        bound = shared_pool.options(**{option: value})
    except ConfigurationError as error:
        _refused(error, valid, lambda key: key == option)
        return
    future = bound.submit(divmod, 7, 2)
    try:
        assert future.result(timeout=30) == (3, 1)
    except (TaskTimeout, QueueWaitTimeout):
        pass
    shared_pool.stats()
    shared_pool.metrics()


# -- the option objects -------------------------------------------------------------


def _fields_of(names: list[str]) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(st.sampled_from(names), VALUES, max_size=3)


VALID_RETRY_POLICY = st.fixed_dictionaries(
    {},
    optional={
        "retries": VALID_POOL_OPTIONS["retries"],
        "retry_delay": SECONDS_OR_ZERO,
        "max_retry_delay": SECONDS_OR_ZERO,
        "retryable_errors": st.lists(
            st.text(min_size=1, max_size=4) | st.sampled_from([OSError, KeyError]), max_size=3
        ),
        "throttling_errors": st.lists(st.text(max_size=4), max_size=3),
        "classifier": st.none() | st.just(lambda error: None),
    },
)
RETRY_POLICY_FIELDS = [
    "retries",
    "retry_delay",
    "max_retry_delay",
    "retryable_errors",
    "throttling_errors",
    "classifier",
]


@FUZZ
@given(drawn=_either(VALID_RETRY_POLICY, _fields_of(RETRY_POLICY_FIELDS)))
def test_retry_policy(drawn: tuple[bool, dict[str, object]]) -> None:
    valid, given_fields = drawn
    try:
        policy = RetryPolicy(**given_fields)  # type: ignore[arg-type]
    except ConfigurationError as error:
        _refused(error, valid, lambda key: key in given_fields)
        return
    for retry in (0, 1, 10, policy.retries):
        assert 0 <= policy.backoff(retry) <= policy.max_retry_delay
    _runs(OperationsPool(load_entrypoints=False, retry_policy=policy))


COUNT = st.integers(min_value=0, max_value=10**9)
VALID_RETRY_BUDGET = st.fixed_dictionaries(
    {},
    optional={
        "capacity": st.integers(min_value=1, max_value=10**9),
        "retry_cost": COUNT,
        "timeout_retry_cost": COUNT,
        "success_reward": COUNT,
    },
)


@FUZZ
@given(
    drawn=_either(VALID_RETRY_BUDGET, _fields_of(["capacity", "retry_cost", "timeout_retry_cost", "success_reward"]))
)
def test_retry_budget(drawn: tuple[bool, dict[str, object]]) -> None:
    valid, given_fields = drawn
    try:
        budget = RetryBudget(**given_fields)  # type: ignore[arg-type]
    except ConfigurationError as error:
        _refused(error, valid, lambda key: key.removeprefix("retry_budget.") in given_fields)
        return
    budget.on_success(budget.try_acquire(TimeoutError()) or 0)
    assert 0 <= budget.tokens <= budget.capacity
    _runs(OperationsPool(load_entrypoints=False, retry_budget=budget))


@FUZZ
@given(drawn=_either(_valid_auto_tuning(), _fields_of([f.name for f in fields(AutoTuning)])))
def test_auto_tuning(drawn: tuple[bool, dict[str, object]]) -> None:
    valid, given_fields = drawn
    try:
        tuning = AutoTuning(**given_fields)  # type: ignore[arg-type]
    except ConfigurationError as error:  # the field blamed is one that was given
        _refused(error, valid, lambda key: key.removeprefix("auto_tuning.") in given_fields)
        for mentioned in error.mentions:
            assert mentioned.startswith("auto_tuning.") and mentioned in error.accepted
        return
    assert tuning.min_concurrency <= tuning.start <= tuning.max_concurrency
    _runs(OperationsPool(load_entrypoints=False, concurrency="auto", auto_tuning=tuning))


@FUZZ
@given(drawn=_either(VALID_MONITORING, _fields_of([f.name for f in fields(MonitoringConfig)])))
def test_monitoring_config(drawn: tuple[bool, dict[str, object]]) -> None:
    valid, given_fields = drawn
    try:
        monitoring = MonitoringConfig(**given_fields)  # type: ignore[arg-type]
    except ConfigurationError as error:
        _refused(error, valid, lambda key: key.removeprefix("monitoring.") in given_fields)
        return
    _runs(OperationsPool(load_entrypoints=False, monitoring=monitoring))


# -- S3POOL_* environment variables ------------------------------------------------

VARIABLES = known_variables()

TEXTS = st.one_of(
    st.text(max_size=12),
    st.integers(min_value=0, max_value=100).map(str),
    st.floats(min_value=0, max_value=10).map(str),
    st.sampled_from(
        ["none", "None", " auto ", "AUTO", "on", "off", "nan", "inf", "-inf", "1e10", "1e-320", "0x10", "1_0"]
    ),
    st.integers().map(str),
    st.integers(min_value=-(10**500), max_value=10**500).map(str),
    st.floats().map(repr),
    st.sampled_from(["9" * 400, "9" * 5000, "1" + "0" * 400, str(2**63), str(MAX_SECONDS + 1)]),
    st.sampled_from(["pool", "bucket", "prefix", "light", "full", "raise", "SlowDown, 503"]),
)

NAMES = st.one_of(
    st.sampled_from(VARIABLES),
    st.sampled_from(VARIABLES),
    st.sampled_from(VARIABLES).map(lambda variable: variable[:-1]),  # a typo
    st.sampled_from(VARIABLES).map(lambda variable: "S3POOL_" + variable[len("S3POOL_") :].lower()),
    st.text(max_size=10).map(lambda suffix: "S3POOL_" + suffix),
)


def _texts(values: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    return values.map(lambda value: "none" if value is None else repr(value))


BOOLEAN_TEXTS = st.sampled_from(["1", "true", "Yes", " on ", "0", "FALSE", "no", "off"])
VALID_TEXTS: dict[str, st.SearchStrategy[str]] = {
    "S3POOL_ENABLED": BOOLEAN_TEXTS,
    "S3POOL_CONCURRENCY": _texts(VALID_POOL_OPTIONS["concurrency"]) | st.just("Auto"),
    "S3POOL_RETRIES": _texts(VALID_POOL_OPTIONS["retries"]),
    "S3POOL_RETRY_DELAY": _texts(SECONDS_OR_ZERO),
    "S3POOL_MAX_RETRY_DELAY": _texts(SECONDS_OR_ZERO),
    "S3POOL_RETRYABLE_ERRORS": st.lists(st.from_regex(r"[A-Za-z0-9]{1,6}", fullmatch=True), max_size=3).map(",".join),
    "S3POOL_RETRY_BUDGET": BOOLEAN_TEXTS,
    "S3POOL_TIMEOUT": _texts(st.none() | SECONDS),
    "S3POOL_QUEUE_TIMEOUT": _texts(st.none() | SECONDS),
    "S3POOL_PRIORITY": _texts(PRIORITY),
    "S3POOL_AGING_RATE": _texts(VALID_POOL_OPTIONS["aging_rate"]),
    "S3POOL_MAX_QUEUE": _texts(VALID_POOL_OPTIONS["max_queue"]),
    "S3POOL_QUEUE_FULL": st.sampled_from(["block", "raise"]),
    "S3POOL_MONITORING": st.sampled_from(["off", "light", "full"]),
    "S3POOL_LOAD_ENTRYPOINTS": st.just("0"),
    "S3POOL_NAME": st.text(min_size=1, max_size=6),
    "S3POOL_SEED": _texts(VALID_POOL_OPTIONS["seed"]),
    "S3POOL_AUTO_MIN_CONCURRENCY": _texts(st.integers(min_value=1, max_value=10)),
    "S3POOL_AUTO_MAX_CONCURRENCY": _texts(st.integers(min_value=64, max_value=100_000)),
    "S3POOL_AUTO_INITIAL_CONCURRENCY": _texts(st.integers(min_value=10, max_value=64)),
    "S3POOL_AUTO_TARGET_LATENCY": _texts(st.none() | SECONDS),
    "S3POOL_AUTO_TARGET_MEMORY_PERCENT": _texts(st.none() | st.floats(min_value=0, max_value=1, exclude_min=True)),
    "S3POOL_AUTO_ADJUSTMENT_INTERVAL": _texts(SECONDS),
    "S3POOL_AUTO_SCOPE": st.sampled_from(["pool", "bucket", "prefix"]),
    "S3POOL_AUTO_PREFIX_DEPTH": _texts(st.integers(min_value=1, max_value=1024)),
    "S3POOL_AUTO_MAX_PARTITIONS": _texts(st.integers(min_value=1, max_value=10**9)),
    # A fleet URL needs a plugin providing its scheme, and a fleet-wide limit needs a fleet: none here.
    "S3POOL_FLEET": st.just("none"),
    "S3POOL_FLEET_NAME": st.from_regex(r"[A-Za-z0-9._:-]{1,12}", fullmatch=True),
    "S3POOL_FLEET_CONCURRENCY": st.just("none"),
    "S3POOL_HEDGE": BOOLEAN_TEXTS,
    "S3POOL_HEDGE_DELAY": _texts(HEDGE_FIELDS["delay"]),
    "S3POOL_HEDGE_QUANTILE": _texts(HEDGE_FIELDS["quantile"]),
    "S3POOL_HEDGE_MIN_SAMPLES": _texts(HEDGE_FIELDS["min_samples"]),
    "S3POOL_HEDGE_BUDGET": _texts(HEDGE_FIELDS["budget"]),
    "S3POOL_HEDGE_BURST": _texts(HEDGE_FIELDS["burst"]),
    "S3POOL_HEDGE_QUIET": _texts(SECONDS),
    "S3POOL_BODY_IDLE_TIMEOUT": _texts(SECONDS),
}


def test_every_variable_has_valid_texts_in_the_fuzzing() -> None:
    assert sorted(VALID_TEXTS) == sorted(VARIABLES)


@st.composite
def _valid_environment(draw: st.DrawFn) -> dict[str, str]:
    environment = draw(st.fixed_dictionaries({}, optional=VALID_TEXTS))
    if any(variable.startswith("S3POOL_AUTO_") for variable in environment):
        environment["S3POOL_CONCURRENCY"] = "auto"
    return environment


@FUZZ
@given(drawn=_either(_valid_environment(), st.dictionaries(NAMES, TEXTS, max_size=3)), auto=st.booleans())
def test_environment(drawn: tuple[bool, dict[str, str]], auto: bool) -> None:
    valid, environment = drawn
    if auto:
        environment["S3POOL_CONCURRENCY"] = "auto"
    try:
        config = config_from_environment(environment, load_entrypoints=False)
    except ConfigurationError as error:
        assert not valid, f"variables within the documented ranges were refused: {error}"
        event("refused")
        assert error.option in environment, f"{error.option!r} was not set: {error}"
        assert "accepted: " in str(error)
        for name in error.accepted.split():  # every variable the message names is a real one
            word = name.strip(",.;:()?=").partition("=")[0]
            if word.startswith("S3POOL_") and word != error.option:
                assert word in VARIABLES, word
        return
    _runs(OperationsPool(config))


def _spelled_everywhere(error: ConfigurationError, spell: Mapping[str, str]) -> str:
    return error.renamed(lambda key: spell.get(key, key)).accepted


@settings(max_examples=60, deadline=None)
@given(
    low=st.integers(min_value=1, max_value=100_000),
    high=st.integers(min_value=1, max_value=100_000),
    initial=st.none() | st.integers(min_value=1, max_value=100_000),
)
def test_bound_conflicts_name_their_options_in_any_terms(low: int, high: int, initial: int | None) -> None:
    """Whatever the route, a conflict between bounds names both options in that route's spelling."""
    spell = {
        "auto_tuning.min_concurrency": "--min-concurrency",
        "auto_tuning.max_concurrency": "--max-concurrency",
        "auto_tuning.initial_concurrency": "--initial-concurrency",
    }
    try:
        AutoTuning(min_concurrency=low, max_concurrency=high, initial_concurrency=initial)
    except ConfigurationError as error:
        assert error.mentions and "auto_tuning." not in _spelled_everywhere(error, spell)
        assert all(spell[key] in _spelled_everywhere(error, spell) for key in error.mentions)
        return
    assert low <= high and (initial is None or low <= initial <= high)
