"""expected_errors: calls that fail with an expected answer count apart, under concurrency too (property test)."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from s3pool_plugins import OperationsPool, expected_errors


class Missing(LookupError):
    """The answer an expected_errors scope below accepts."""


def _is_missing(error: BaseException) -> bool:
    return isinstance(error, Missing)


def _one_call(pool: OperationsPool, outcome: str, nested: bool) -> None:
    outer = pool.begin_call("outer") if nested else None
    if outer is not None:
        outer.start_attempt()
    call = pool.begin_call("probe")
    call.start_attempt()
    if outcome == "ok":
        call.finish(None, "found")
    elif outcome == "expected":
        with expected_errors(_is_missing):
            call.finish(Missing("not there"))
    elif outcome == "unexpected-in-scope":  # another error inside the scope is still a failure
        with expected_errors(_is_missing):
            call.finish(OSError("broken"))
    else:  # a Missing outside any scope is a failure as before
        call.finish(Missing("not there"))
    if outer is not None:
        outer.finish(None, None)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["ok", "expected", "unexpected-in-scope", "unscoped"]), st.booleans()),
        min_size=1,
        max_size=24,
    ),
    st.integers(min_value=1, max_value=4),
)
def test_expected_failures_are_counted_apart_and_every_slot_comes_back(
    calls: list[tuple[str, bool]], concurrency: int
) -> None:
    pool = OperationsPool(concurrency=concurrency, load_entrypoints=False, monitoring="full")
    try:
        threads = [threading.Thread(target=_one_call, args=(pool, outcome, nested)) for outcome, nested in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not any(thread.is_alive() for thread in threads)
        stats = pool.stats()
        outcomes = [outcome for outcome, _ in calls]
        outers = sum(nested for _, nested in calls)
        assert stats.expected == outcomes.count("expected")
        assert stats.errors == outcomes.count("unexpected-in-scope") + outcomes.count("unscoped")
        assert stats.succeeded == outcomes.count("ok") + outers
        assert stats.processed == stats.succeeded + stats.errors + stats.expected
        assert (stats.active, stats.queued, stats.pending) == (0, 0, 0)
        assert stats.peak_active <= concurrency
        failures = stats.errors / stats.processed
        assert abs(pool.metrics().failure_rate - failures) < 1e-9
    finally:
        pool.shutdown()
