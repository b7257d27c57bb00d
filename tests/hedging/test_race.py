"""Which copy of a hedged read answers: a property test of the race's decision over every finishing order.

A fast failure (an error, or a 5xx response) never beats a success still to come; when both copies
fail, a response (the first attempt's first) answers, so botocore parses it and the retry policy sees it.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from hypothesis import given
from hypothesis import strategies as st

from s3pool_plugins.adapters.botocore.hedge import both_failed, first_success

STATUSES = st.sampled_from([200, 206, 304, 404, 500, 503])
OUTCOMES = st.one_of(STATUSES, st.just("error"))
"""One copy's outcome: a response's status, or an exception."""


def _outcome(kind: Any) -> tuple[Any, BaseException | None]:
    if kind == "error":
        return None, ConnectionError("reset")
    return AWSResponse("http://s3.local/b/k", kind, {}, None), None


def _succeeds(kind: Any) -> bool:
    return kind != "error" and kind < 500


def _race(kinds: tuple[Any, Any], times: tuple[int, int]) -> tuple[str, Any]:
    """Run the race's loop over the copies' finishing times; ``(who answered, its outcome)``."""
    first, hedge = "first", "hedge"
    outcomes: dict[Any, tuple[Any, BaseException | None]] = {}
    pending = {first: times[0], hedge: times[1]}
    while pending:
        now = min(pending.values())
        done = {copy for copy, at in pending.items() if at == now}
        for copy in done:
            outcomes[copy] = _outcome(kinds[0 if copy == first else 1])
            del pending[copy]
        winner = first_success((first, hedge), done, outcomes)
        if winner is not None:
            return winner, outcomes[winner]
    try:
        response = both_failed(outcomes[first], outcomes[hedge])
    except ConnectionError as error:
        return "error", (None, error)
    return ("first" if response is outcomes[first][0] else "hedge"), (response, None)


@given(kinds=st.tuples(OUTCOMES, OUTCOMES), times=st.tuples(st.integers(0, 3), st.integers(0, 3)))
def test_a_success_always_answers_when_either_copy_succeeds(kinds: tuple[Any, Any], times: tuple[int, int]) -> None:
    who, (response, _error) = _race(kinds, times)
    successes = [(times[i], i) for i in (0, 1) if _succeeds(kinds[i])]
    if successes:
        expected = ("first", "hedge")[min(successes)[1]]  # the earliest success; the first attempt on a tie
        assert who == expected and response.status_code < 500
    elif kinds[0] != "error":
        assert who == "first" and response.status_code == kinds[0]
    elif kinds[1] != "error":
        assert who == "hedge" and response.status_code == kinds[1]
    else:
        assert who == "error"


def test_both_failed_closes_the_response_it_does_not_use() -> None:
    import urllib3

    class Raw(urllib3.HTTPResponse):
        closed_here = False

        def close(self) -> None:
            type(self).closed_here = True
            super().close()

    unused = AWSResponse("http://s3.local/b/k", 503, {}, Raw(body=b"", status=503, preload_content=False))
    with pytest.raises(ConnectionError):
        both_failed((None, ConnectionError("reset")), (None, ConnectionError("reset")))
    assert both_failed((AWSResponse("http://s3.local/b/k", 500, {}, None), None), (unused, None)).status_code == 500
    assert Raw.closed_here
