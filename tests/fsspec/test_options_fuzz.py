"""Fuzz the pool:: storage options: every bad value raises ConfigurationError naming its option, before any IO."""

from __future__ import annotations

from typing import Any

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3pool_plugins import ConfigurationError
from s3pool_plugins.adapters.fsspec import PooledFileSystem

not_a_filesystem = st.one_of(
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.binary(max_size=5),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
falsy = st.sampled_from(["", 0, 0.0, [], {}, (), False, b""])
unknown_protocol = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8).map(lambda s: f"nope{s}")
not_a_protocol = st.one_of(
    falsy, unknown_protocol, st.integers(), st.floats(), st.lists(st.text(max_size=2), max_size=2)
)
not_options = st.one_of(
    st.integers(),
    st.floats(),
    st.text(max_size=5),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
)
not_a_bool = st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats())
not_a_priority = st.one_of(
    st.text(max_size=3),
    st.floats(allow_nan=True).filter(lambda x: x != x or abs(x) == float("inf")),
    st.lists(st.integers(), max_size=1),
)
not_a_pool = st.one_of(
    st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2), st.floats(), st.booleans()
)
not_a_concurrency = st.one_of(st.integers(max_value=0), st.text(max_size=3).filter(lambda s: s != "auto"), st.floats())

BAD: dict[str, Any] = {
    "fs": not_a_filesystem,
    "target_protocol": not_a_protocol,
    "target_options": not_options,
    "asynchronous": not_a_bool,
    "priority": not_a_priority,
    "pool": not_a_pool,
    "concurrency": not_a_concurrency,
    "batch_size": st.one_of(st.text(max_size=3), st.floats(), st.booleans()),
}


def _options(option: str, value: object) -> dict[str, Any]:
    options: dict[str, Any] = {option: value}
    if option not in ("fs", "target_protocol"):
        options["target_protocol"] = "memory"
    if option == "target_protocol" and value is None:
        options["target_protocol"] = ""
    return options


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BAD)).flatmap(lambda option: st.tuples(st.just(option), BAD[option])))
def test_every_bad_pool_option_names_itself(case: tuple[str, object]) -> None:
    option, value = case
    with pytest.raises(ConfigurationError) as raised:
        PooledFileSystem(**_options(option, value))
    assert raised.value.option == option, (option, value, str(raised.value))


@pytest.mark.parametrize("protocol", ["", 0, [], {}])
def test_a_falsy_target_protocol_never_wraps_the_local_filesystem(protocol: object, tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="target_protocol"):
        PooledFileSystem(target_protocol=protocol)
    with pytest.raises(ConfigurationError, match="target_protocol"):
        fsspec.filesystem("pool", target_protocol=protocol, target_options={"auto_mkdir": True})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("option", "value"), [("fs", 1), ("target_options", 1), ("target_options", "x")])
def test_the_options_found_by_the_audit_name_themselves(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=option):
        PooledFileSystem(**_options(option, value))


def test_a_chained_url_with_bad_pool_options_names_them() -> None:
    with pytest.raises(ConfigurationError, match="priority"):
        fsspec.core.url_to_fs("pool::memory://x", pool={"priority": "high"})
