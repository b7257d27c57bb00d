"""S3PoolWorkerPlugin in a real process cluster: Parquet written and read on a local S3 through a faulty proxy."""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any

import cloudpickle
import fsspec
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from s3pool_dask import PLUGIN_NAME, ProcessInstallation, S3PoolWorkerPlugin, with_pool_plugin, worker_pool
from s3pool_dask.installation import PLUGIN_ENTRY, PLUGINS_VARIABLE

from s3pool_plugins import ConfigurationError, LocalFleet, OperationsPool, RetryBudget
from s3pool_plugins.adapters.fsspec import installed_fsspec_pool

distributed = pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")


def _cluster() -> Any:
    return distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0")


def _routes_in_this_worker(storage_options: dict[str, Any]) -> dict[str, Any]:
    pool = worker_pool()
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **storage_options)
    return {
        "pid": os.getpid(),
        "pool": pool is not None,
        "fsspec": pool is not None and installed_fsspec_pool() is pool and getattr(fs, "pool", None) is pool,
        "variable": os.environ.get(PLUGINS_VARIABLE),
    }


def test_workers_write_and_read_parquet_under_their_pools_with_503s(local_s3, chaos_proxy, s3_bucket) -> None:
    # The client process installs nothing: the workers' plain s3fs filesystems are pooled by the plugin.
    chaos_proxy.reseed(16)
    chaos_proxy.configure(throttle_rate=0.08)
    options = local_s3.storage_options(chaos_proxy.endpoint_url)
    frame = pd.DataFrame(
        {"id": range(600), "group": [i % 6 for i in range(600)], "value": [i * 0.25 for i in range(600)]}
    )
    plugin = S3PoolWorkerPlugin(concurrency=4, retries=8, retry_delay=0.01, max_retry_delay=0.05, seed=3)

    with _cluster() as cluster, distributed.Client(cluster) as client:
        client.register_plugin(plugin)
        routes = client.run(_routes_in_this_worker, local_s3.storage_options())
        dd.from_pandas(frame, npartitions=8).to_parquet(
            f"s3://{s3_bucket}/dataset", storage_options=options, write_metadata_file=False
        )
        back = dd.read_parquet(f"s3://{s3_bucket}/dataset", storage_options=options).compute()
        after_write_and_read = plugin.stats(client)

    assert len(routes) == 2 and len({route["pid"] for route in routes.values()}) == 2
    assert all(route["pool"] and route["fsspec"] for route in routes.values())
    assert all(PLUGIN_ENTRY in route["variable"].split(",") for route in routes.values())
    back = back.sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False, check_index_type=False)
    assert chaos_proxy.stats().throttled > 0  # the 503s happened ...
    assert set(after_write_and_read) == set(routes)
    for stats in after_write_and_read.values():  # ... and each worker's requests went through its pool
        assert stats.succeeded > 0 and stats.active == 0 and stats.errors == 0
    assert sum(stats.throttled for stats in after_write_and_read.values()) > 0
    assert sum(stats.retries for stats in after_write_and_read.values()) > 0


def _installed_in_this_worker() -> tuple[bool, str | None, bool]:
    return worker_pool() is not None, os.environ.get(PLUGINS_VARIABLE), installed_fsspec_pool() is not None


def test_unregistering_the_plugin_takes_every_route_back(s3_bucket) -> None:
    with _cluster() as cluster, distributed.Client(cluster) as client:
        before = client.run(_installed_in_this_worker)
        # Options valid here but a pool the workers cannot build (no plugin there provides the scheme):
        # the workers' error reaches the caller, and they are left as they were.
        with pytest.raises(ConfigurationError) as raised:
            client.register_plugin(S3PoolWorkerPlugin(fleet="nosuch://store.internal/0"))
        assert raised.value.option == "fleet"
        assert client.run(_installed_in_this_worker) == before
        client.register_plugin(S3PoolWorkerPlugin(concurrency=2, botocore=False))
        during = client.run(_installed_in_this_worker)
        client.unregister_worker_plugin(PLUGIN_NAME)
        after = client.run(_installed_in_this_worker)
    assert list(during.values()) == [(True, before_state[1], True) for before_state in before.values()]
    assert after == before


def test_the_plugin_pickles_by_its_options_and_hides_the_fleet_url() -> None:
    url = "redis://etl:s3cr3t-pw@redis.internal:6379/0"
    plugin = S3PoolWorkerPlugin(concurrency="auto", retries=4, fsspec=False, fleet=url, fleet_name="etl")
    again = pickle.loads(cloudpickle.dumps(plugin))
    expected = {"concurrency": "auto", "retries": 4, "fleet": url, "fleet_name": "etl"}
    assert (again.pool_options, again.botocore, again.fsspec) == (expected, True, False)
    assert again.name == PLUGIN_NAME
    assert "retries=4" in repr(again) and "fleet_name='etl'" in repr(again)
    assert "s3cr3t" not in repr(again) and "redis.internal" not in repr(again)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"concurency": 4}, "concurency"),
        ({"concurrency": 0}, "concurrency"),
        ({"retries": "three"}, "retries"),
        ({"botocore": "yes"}, "botocore"),
        ({"botocore": False, "fsspec": False}, "botocore"),
        ({"fleet": LocalFleet()}, "fleet"),
        ({"fleet": "redis://127.0.0.1:6379/0", "fleet_name": "an etl job"}, "fleet_name"),
        ({"fleet": "redis://127.0.0.1:6379/0", "fleet_concurrency": 0}, "fleet_concurrency"),
        ({"name": "x", "plugins": (), "retry_budget": False}, None),
    ],
)
def test_bad_options_fail_in_the_callers_process_naming_the_option(options: dict[str, Any], named: str | None) -> None:
    if named is None:
        S3PoolWorkerPlugin(**options)  # valid options that pickle
        return
    with pytest.raises(ConfigurationError) as raised:
        S3PoolWorkerPlugin(**options)
    assert raised.value.option == named and named in str(raised.value)


def test_options_that_cannot_reach_the_workers_are_refused_by_name() -> None:
    with pytest.raises(ConfigurationError) as raised:
        S3PoolWorkerPlugin(retry_budget=RetryBudget())  # a budget object holds a lock: one per process, not shared
    assert raised.value.option == "retry_budget" and "pickles" in raised.value.accepted


def test_workers_of_one_process_share_its_pool_and_the_last_one_uninstalls() -> None:
    installation = ProcessInstallation()
    variable = os.environ.get(PLUGINS_VARIABLE)
    options = {"concurrency": 3, "load_entrypoints": False}
    first = installation.acquire(options, botocore=True, fsspec=True)
    try:
        assert installation.acquire(dict(options), botocore=True, fsspec=True) is first
        with pytest.raises(RuntimeError, match="one S3PoolWorkerPlugin configuration"):
            installation.acquire({"concurrency": 4}, botocore=True, fsspec=True)
        assert os.environ[PLUGINS_VARIABLE] == with_pool_plugin(variable)
        assert installed_fsspec_pool() is first
        assert installation.release() and installation.pool() is first  # one worker left: still installed
    finally:
        assert installation.release()
    assert installation.pool() is None and installed_fsspec_pool() is None
    assert os.environ.get(PLUGINS_VARIABLE) == variable
    assert first.stats().stopped and not installation.release()


def test_the_botocore_variable_keeps_other_plugins_and_respects_disabled() -> None:
    assert with_pool_plugin(None) == PLUGIN_ENTRY
    assert with_pool_plugin("mine=my.module, s3pool=old.module") == f"mine=my.module,{PLUGIN_ENTRY}"
    with pytest.raises(ValueError, match="DISABLED"):
        with_pool_plugin("DISABLED")


def test_concurrent_acquire_and_release_leave_nothing_installed() -> None:
    installation = ProcessInstallation()
    options = {"concurrency": 2, "load_entrypoints": False}
    pools: list[OperationsPool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        pools.append(installation.acquire(options, botocore=False, fsspec=True))
        installation.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(pools) == 8 and installation.pool() is None and installed_fsspec_pool() is None
    assert all(pool.stats().stopped for pool in pools)


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(st.booleans(), max_size=12))
def test_the_installation_is_there_exactly_while_a_worker_holds_it(steps: list[bool]) -> None:
    """True: a worker sets up; False: a worker tears down (one that never set up changes nothing)."""
    installation = ProcessInstallation()
    variable = os.environ.get(PLUGINS_VARIABLE)
    holders, pools = 0, set()
    try:
        for setup in steps:
            if setup:
                pools.add(
                    installation.acquire({"concurrency": 2, "load_entrypoints": False}, botocore=True, fsspec=True)
                )
                holders += 1
            else:
                assert installation.release() == (holders > 0)
                holders = max(0, holders - 1)
            pool = installation.pool()
            assert (pool is not None) == (holders > 0)
            assert (installed_fsspec_pool() is pool) if pool is not None else installed_fsspec_pool() is None
            assert os.environ.get(PLUGINS_VARIABLE) == (with_pool_plugin(variable) if holders else variable)
    finally:
        while installation.release():
            pass
    assert all(pool.stats().stopped for pool in pools)
