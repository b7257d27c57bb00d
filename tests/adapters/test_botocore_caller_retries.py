"""The pool keeps the retries a program asked of botocore, counted at the proxy.

A client's retries come from its ``Config(retries=...)``, ``AWS_MAX_ATTEMPTS``
/ ``AWS_RETRY_MODE`` or the config file. Unless the pool's ``retries`` were
chosen, the pool makes exactly as many attempts as botocore would have made,
and never fewer than botocore's default would.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.session import Session as BotocoreSession
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3pool_plugins import OperationsPool, config_from_environment, install
from s3pool_plugins.adapters.botocore import RetriesOverridden
from s3pool_plugins.adapters.botocore.caller_retries import caller_retries, client_policy

PATH_STYLE = {"s3": {"addressing_style": "path"}}


@pytest.fixture
def clean_aws_env(monkeypatch, tmp_path: Path) -> Path:
    """No retry setting from the environment or a config file unless the test sets one; returns the config path."""
    for name in ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_DEFAULTS_MODE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "aws-config"
    config.write_text("[default]\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    return config


@pytest.fixture
def botocore_session(clean_aws_env) -> BotocoreSession:
    session = BotocoreSession()
    session.set_credentials("k", "s")
    session.set_config_variable("region", "us-east-1")
    return session


def _attempts(client, bucket: str, proxy) -> int:
    """Attempts of one HeadObject that S3 throttles every time, as the proxy saw them."""
    proxy.configure(throttle_rate=1.0)
    proxy.reset_counts()
    with pytest.raises(ClientError):
        client.head_object(Bucket=bucket, Key="throttled")
    proxy.wait_idle()
    return proxy.stats().requests


def _session_client(local_s3, proxy, pool, **config):
    session = boto3.session.Session(
        aws_access_key_id=local_s3.access_key, aws_secret_access_key=local_s3.secret_key, region_name=local_s3.region
    )
    install(session, pool)
    return session.client("s3", endpoint_url=proxy.endpoint_url, config=Config(**PATH_STYLE, **config))


def _installed_client(local_s3, proxy, pool, **config):
    kwargs = local_s3.client_kwargs(endpoint_url=proxy.endpoint_url)
    client = boto3.session.Session().client("s3", config=Config(**PATH_STYLE, **config), **kwargs)
    install(client, pool)
    return client


ROUTES = {"session": _session_client, "client": _installed_client}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("retries", "expected"),
    [
        ({"max_attempts": 10}, 11),  # botocore's client config counts retries
        ({"total_max_attempts": 6}, 6),
        ({"max_attempts": 1, "mode": "standard"}, 2),
        ({"max_attempts": 0}, 1),
    ],
)
def test_the_clients_retries_config_is_kept(
    make_pool, local_s3, chaos_proxy, s3_bucket, clean_aws_env, route, retries, expected
) -> None:
    pool = make_pool()
    client = ROUTES[route](local_s3, chaos_proxy, pool, retries=retries)
    assert _attempts(client, s3_bucket, chaos_proxy) == expected
    assert pool.stats().retries == expected - 1


@pytest.mark.parametrize("route", ROUTES)
def test_aws_max_attempts_is_kept(make_pool, local_s3, chaos_proxy, s3_bucket, clean_aws_env, monkeypatch, route):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "10")  # the environment counts attempts
    client = ROUTES[route](local_s3, chaos_proxy, make_pool())
    assert _attempts(client, s3_bucket, chaos_proxy) == 10


def test_the_config_files_max_attempts_and_retry_mode_are_kept(
    make_pool, local_s3, chaos_proxy, s3_bucket, clean_aws_env
) -> None:
    clean_aws_env.write_text("[default]\nmax_attempts = 7\nretry_mode = standard\n")
    client = _session_client(local_s3, chaos_proxy, make_pool())
    assert caller_retries(client).mode == "standard"
    assert _attempts(client, s3_bucket, chaos_proxy) == 7


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("legacy", 5),  # botocore's legacy default for S3: 5 attempts, more than the pool's default 4
        ("standard", 4),  # botocore's standard default: 3 attempts, fewer than the pool's default
        ("adaptive", 4),
    ],
)
def test_without_a_number_the_default_is_never_weaker_than_botocores(
    make_pool, local_s3, chaos_proxy, s3_bucket, clean_aws_env, monkeypatch, mode, expected
) -> None:
    monkeypatch.setenv("AWS_RETRY_MODE", mode)
    pool = make_pool()
    assert pool.retry_policy.retries == 3
    client = _installed_client(local_s3, chaos_proxy, pool)
    assert caller_retries(client).explicit is False
    assert _attempts(client, s3_bucket, chaos_proxy) == expected


@pytest.mark.parametrize("route", ROUTES)
def test_chosen_pool_retries_win_and_warn_once_per_pool(
    make_pool, local_s3, chaos_proxy, s3_bucket, clean_aws_env, route
) -> None:
    pool = make_pool(retries=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ROUTES[route](local_s3, chaos_proxy, pool, retries={"max_attempts": 10})
        assert _attempts(first, s3_bucket, chaos_proxy) == 3
        second = ROUTES[route](local_s3, chaos_proxy, pool, retries={"max_attempts": 6})
        assert _attempts(second, s3_bucket, chaos_proxy) == 3
        same = ROUTES[route](local_s3, chaos_proxy, make_pool(retries=4), retries={"max_attempts": 4})
        assert _attempts(same, s3_bucket, chaos_proxy) == 5
    overridden = [w for w in caught if issubclass(w.category, RetriesOverridden)]
    assert len(overridden) == 1, [str(w.message) for w in caught]
    message = str(overridden[0].message)
    assert "10 retries" in message and "retries 2 times" in message and "S3POOL_RETRIES" in message
    assert overridden[0].filename == __file__  # points at the caller's line


def test_s3pool_retries_counts_as_chosen(local_s3, chaos_proxy, s3_bucket, clean_aws_env) -> None:
    assert config_from_environment({"S3POOL_RETRIES": "1"}).retries_chosen
    assert not config_from_environment({}).retries_chosen
    assert not config_from_environment({"S3POOL_RETRY_DELAY": "0.001"}).retries_chosen
    pool = OperationsPool(
        config_from_environment({"S3POOL_RETRIES": "1", "S3POOL_RETRY_DELAY": "0.001"}, load_entrypoints=False)
    )
    try:
        with pytest.warns(RetriesOverridden):
            client = _installed_client(local_s3, chaos_proxy, pool, retries={"max_attempts": 5})
        assert _attempts(client, s3_bucket, chaos_proxy) == 2
    finally:
        pool.shutdown()


@pytest.mark.parametrize("route", ["session", "client"])
async def test_aiobotocore_clients_keep_their_retries(
    make_pool, local_s3, chaos_proxy, s3_bucket, clean_aws_env, route
) -> None:
    pool = make_pool()
    session = AioSession()
    if route == "session":
        install(session, pool)
    config = AioConfig(retries={"max_attempts": 6}, **PATH_STYLE)
    kwargs = local_s3.client_kwargs(endpoint_url=chaos_proxy.endpoint_url)
    async with session.create_client("s3", config=config, **kwargs) as client:
        if route == "client":
            install(client, pool)
        chaos_proxy.configure(throttle_rate=1.0)
        chaos_proxy.reset_counts()
        with pytest.raises(ClientError):
            await client.head_object(Bucket=s3_bucket, Key="throttled")
    chaos_proxy.wait_idle()
    assert chaos_proxy.stats().requests == 7


@given(
    chosen=st.one_of(st.none(), st.integers(0, 20)),
    asked=st.one_of(st.none(), st.tuples(st.sampled_from(["max_attempts", "total_max_attempts"]), st.integers(1, 30))),
    mode=st.sampled_from(["legacy", "standard", "adaptive"]),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_which_retries_a_client_gets(botocore_session, chosen, asked, mode) -> None:
    retries: dict[str, object] = {"mode": mode}
    if asked is not None:
        retries[asked[0]] = asked[1]
    client = botocore_session.create_client("s3", endpoint_url="http://127.0.0.1:9", config=Config(retries=retries))
    options = {} if chosen is None else {"retries": chosen}
    pool = OperationsPool(load_entrypoints=False, **options)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            policy = client_policy(pool.retry_policy, pool, client)
        asked_retries = None if asked is None else asked[1] - (asked[0] == "total_max_attempts")
        botocore_default = 5 if mode == "legacy" else 3  # attempts
        if chosen is not None:
            assert policy.retries == chosen
            assert len(caught) == (asked_retries is not None and asked_retries != chosen)
        elif asked_retries is not None:
            assert policy.retries == asked_retries and not caught
        else:
            assert policy.retries == max(3, botocore_default - 1) and not caught
        assert policy.retry_delay == pool.retry_policy.retry_delay  # only the count is the client's
    finally:
        pool.shutdown()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"AWS_MAX_ATTEMPTS": "7"}, 7),
        ({"AWS_RETRY_MODE": "legacy"}, 5),  # botocore's own default (aws-cli v1 runs with it): 4 retries, not 3
        ({"AWS_RETRY_MODE": "standard", "S3POOL_RETRIES": "1"}, 2),  # chosen for the pool
    ],
)
def test_s3pool_run_keeps_the_programs_retries(local_s3, chaos_proxy, s3_bucket, settings, expected) -> None:
    env = local_s3.subprocess_env(endpoint_url=chaos_proxy.endpoint_url)
    env.update(settings)
    program = (
        "import boto3, botocore.exceptions\n"
        "s3 = boto3.client('s3')\n"
        "try:\n"
        f"    s3.head_object(Bucket={s3_bucket!r}, Key='throttled')\n"
        "except botocore.exceptions.ClientError as error:\n"
        "    print(error.response['Error']['Code'])\n"
    )
    chaos_proxy.configure(throttle_rate=1.0)
    argv = ["-m", "s3pool_plugins", "run", "--no-otel", "--quiet", "--retry-delay", "0.001", "--", sys.executable]
    done = subprocess.run([sys.executable, *argv, "-c", program], env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["503"]
    chaos_proxy.wait_idle()
    assert chaos_proxy.stats().requests == expected


@pytest.mark.stress
def test_many_threads_get_one_warning_per_pool(botocore_session) -> None:
    clients = [
        botocore_session.create_client(
            "s3", endpoint_url="http://127.0.0.1:9", config=Config(retries={"max_attempts": 5 + i % 3})
        )
        for i in range(16)
    ]
    pools = [OperationsPool(retries=1, load_entrypoints=False) for _ in range(2)]
    start = threading.Barrier(len(clients))

    def resolve(i: int) -> int:
        start.wait()
        return client_policy(pools[i % 2].retry_policy, pools[i % 2], clients[i]).retries

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with ThreadPoolExecutor(len(clients)) as executor:
                assert list(executor.map(resolve, range(len(clients)))) == [1] * len(clients)
        assert [w.category for w in caught] == [RetriesOverridden, RetriesOverridden]  # one per pool
    finally:
        for pool in pools:
            pool.shutdown()
