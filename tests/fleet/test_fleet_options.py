"""The fleet's routes: pool options, S3POOL_ variables, s3pool run flags, plugins providing URL schemes."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import pytest

from s3pool_plugins import ConfigurationError, LocalFleet, OperationsPool, PoolConfig, config_from_environment, hookimpl
from s3pool_plugins.cli import main
from s3pool_plugins.cli.run import POOL_OPTIONS, child_environment, run_document
from s3pool_plugins.cli.summary import run_summary
from s3pool_plugins.core.fleet.options import redact_url

SECRET = "hunter2-secret"


class MemoryScheme:
    """A third-party plugin providing ``memory://`` fleets (one LocalFleet per name)."""

    fleet_schemes = ("memory",)

    def __init__(self) -> None:
        self.fleets: dict[str, LocalFleet] = {}

    @hookimpl
    def s3pool_fleet_backend(self, url: str, fleet_name: str) -> LocalFleet | None:
        if not url.startswith("memory://"):
            return None
        if url == "memory://bad":
            raise ConfigurationError("fleet", "memory://NAME", redact_url(url))
        return self.fleets.setdefault(fleet_name, LocalFleet(fleet_name))


@pytest.mark.parametrize(
    ("options", "option", "words"),
    [
        ({"fleet": 3}, "fleet", "FleetBackend"),
        ({"fleet": "no-scheme"}, "fleet", "URL"),
        ({"fleet": LocalFleet(), "fleet_name": ""}, "fleet_name", "1 to 64"),
        ({"fleet": LocalFleet(), "fleet_name": "has space"}, "fleet_name", "letters"),
        ({"fleet": LocalFleet(), "fleet_concurrency": 0}, "fleet_concurrency", ">= 1"),
        ({"fleet": LocalFleet(), "fleet_concurrency": 2.5}, "fleet_concurrency", "an int"),
        ({"fleet_concurrency": 4}, "fleet_concurrency", "unless fleet is set"),
    ],
)
def test_bad_fleet_options_name_the_option(options: dict[str, Any], option: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PoolConfig(**options)
    assert caught.value.option == option
    assert words in str(caught.value)


def test_an_unknown_scheme_names_fleet_and_the_schemes_provided() -> None:
    with pytest.raises(ConfigurationError) as caught:
        OperationsPool(fleet=f"redis://:{SECRET}@cache:6379/0", load_entrypoints=False, plugins=[MemoryScheme()])
    message = str(caught.value)
    assert caught.value.option == "fleet"
    assert "memory://" in message and "s3pool-redis" in message and "redis:// and rediss://" in message
    assert SECRET not in message and "redis://cache:6379/0" in message


def test_a_plugin_scheme_makes_the_backend_and_its_errors_reach_the_caller() -> None:
    plugin = MemoryScheme()
    with OperationsPool(
        fleet="memory://x", fleet_name="etl", load_entrypoints=False, plugins=[plugin], fleet_concurrency=2
    ) as pool:
        assert pool.fleet is plugin.fleets["etl"]
        assert pool.submit(lambda: 5).result(timeout=10) == 5
        assert pool.stats().fleet.description == "local:etl"  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="memory://NAME"):
        OperationsPool(fleet="memory://bad", load_entrypoints=False, plugins=[plugin])


def test_credentials_never_show(caplog: Any) -> None:
    url = f"memory://user:{SECRET}@host:1/0?password={SECRET}"
    config = PoolConfig(fleet=url, load_entrypoints=False, plugins=[MemoryScheme()])
    assert SECRET not in repr(config)
    assert SECRET not in str(config.as_dict())
    assert config.fleet_description == "memory://host:1/0"
    with pytest.raises(ConfigurationError) as caught:
        PoolConfig(fleet=f"nope:{SECRET}")
    assert SECRET not in str(caught.value)


def test_a_pool_handed_to_hooks_holds_no_fleet_password_enabled_or_not() -> None:
    seen: list[Any] = []

    class Watcher:
        @hookimpl
        def s3pool_task_completed(self, pool: Any, task: Any, result: Any) -> None:
            seen.append(pool)

    url = f"memory://user:{SECRET}@host:1/0?password={SECRET}"
    for enabled in (True, False):
        seen.clear()
        with OperationsPool(
            fleet=url, enabled=enabled, load_entrypoints=False, plugins=[MemoryScheme(), Watcher()]
        ) as pool:
            pool.submit(lambda: 1).result(timeout=10)
        assert seen == [pool] or not enabled
        assert SECRET not in repr(vars(pool.config)), enabled
        if not enabled:
            assert pool.config.fleet == "memory://host:1/0"


def test_no_fleet_is_the_default_and_costs_no_thread(make_pool: Any) -> None:
    import threading

    before = {t.name for t in threading.enumerate()}
    pool = make_pool(concurrency=2)
    assert pool.submit(lambda: 1).result(timeout=10) == 1
    assert pool.fleet is None and pool.stats().fleet is None and pool.metrics().fleet is None
    assert not any("fleet" in t.name for t in threading.enumerate() if t.name not in before)
    assert pool._scheduler.pacer is None and pool._scheduler.cap is None


def test_stats_and_metrics_show_the_fleet(make_pool: Any) -> None:
    pool = make_pool(concurrency=2, fleet=LocalFleet("shown"), fleet_concurrency=2, monitoring="light")
    assert pool.submit(lambda: 1).result(timeout=10) == 1
    stats, metrics = pool.stats().fleet, pool.metrics().fleet
    assert stats is not None and metrics is not None
    assert (stats.description, stats.fleet_name, stats.state) == ("local:shown", "shown", "joined")
    assert metrics.store_calls >= 1 and metrics.fallbacks == 0
    assert pool.stats().as_dict()["fleet"]["state"] == "joined"


def test_environment_variables() -> None:
    environ = {"S3POOL_FLEET": "memory://a", "S3POOL_FLEET_NAME": "etl", "S3POOL_FLEET_CONCURRENCY": "16"}
    config = config_from_environment(environ)
    assert (config.fleet, config.fleet_name, config.fleet_concurrency) == ("memory://a", "etl", 16)
    assert config_from_environment({"S3POOL_FLEET": "none"}).fleet is None
    with pytest.raises(ConfigurationError) as caught:
        config_from_environment({"S3POOL_FLEET_CONCURRENCY": "16"})
    assert caught.value.option == "S3POOL_FLEET_CONCURRENCY"
    with pytest.raises(ConfigurationError) as caught:
        config_from_environment({"S3POOL_FLEET": "memory://a", "S3POOL_FLEET_NAME": "a b"})
    assert caught.value.option == "S3POOL_FLEET_NAME"


def _args(**given: object) -> argparse.Namespace:
    values: dict[str, object] = dict.fromkeys(POOL_OPTIONS)
    values["otel"] = None
    values.update(given)
    return argparse.Namespace(**values)


def test_run_flags_set_the_variables_and_check_the_scheme(capsys: Any) -> None:
    with pytest.raises(ValueError, match="--fleet"):  # memory:// comes from no installed plugin
        child_environment(_args(fleet="memory://x", fleet_name="etl", fleet_concurrency=8), {})
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--fleet", f"nowhere://u:{SECRET}@h/0", "--", "true"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: s3pool") and "--fleet" in error and "s3pool-redis" in error
    assert SECRET not in error and "nowhere://h/0" in error
    with pytest.raises(SystemExit):
        main(["run", "--fleet-concurrency", "0", "--", "true"])
    assert "--fleet-concurrency" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--fleet-concurrency", "4", "--", "true"])
    assert "--fleet-concurrency" in capsys.readouterr().err


def test_the_run_report_and_summary_show_the_fleet_without_credentials() -> None:
    args = _args(fleet=f"redis://:{SECRET}@cache:6379/0", fleet_name="etl")
    document = run_document([], program="prog", exit_code=0, wall_time=1.0, args=args)
    assert SECRET not in str(document)
    assert document["settings"]["S3POOL_FLEET"] == "redis://cache:6379/0"
    report = {
        "processes": [{"pid": 1}],
        "call_time": {"p50": 0.01, "p95": 0.02, "p99": 0.03, "max": 0.04},
        "calls": 3,
        "failures": 0,
        "succeeded": 3,
        "retries": 0,
        "throttles": 0,
        "peak_active": 2,
        "limit": 4,
        "fleet": {"description": "redis://cache:6379/0", "fleet_name": "etl", "fleet_concurrency": 16},
    }
    text = run_summary(report, program="prog", exit_code=0, wall_time=1.0)
    assert "fleet        etl on redis://cache:6379/0, at most 16 in flight fleet-wide" in text


def test_a_joined_pool_logs_nothing_at_warning(make_pool: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="s3pool_plugins.fleet")
    pool = make_pool(concurrency=2, fleet=LocalFleet("quiet"))
    assert pool.submit(lambda: 1).result(timeout=10) == 1
    assert not [r for r in caplog.records if r.name == "s3pool_plugins.fleet"]
