"""The fleet agent's time box: the store's slowness fails a call, a loaded machine's wait for the CPU does not."""

from __future__ import annotations

import threading
import time

import pytest

from s3pool_plugins import FleetUnavailable
from s3pool_plugins.core.fleet.timebox import TimeBox


def test_a_call_that_answers_in_time_returns_its_result() -> None:
    box = TimeBox("t", 0.5)
    try:
        assert box.call(lambda: 42) == 42
        assert box.abandoned == 0
    finally:
        box.close()


def test_a_store_that_does_not_answer_fails_the_call_and_the_helper_is_abandoned() -> None:
    box = TimeBox("t", 0.2)
    release = threading.Event()
    try:
        started = time.monotonic()
        with pytest.raises(FleetUnavailable, match=r"did not answer within 0\.2 s"):
            box.call(lambda: release.wait(30))
        assert time.monotonic() - started < 10  # gave up long before the call would have returned
        assert box.abandoned == 1
        assert box.call(lambda: "next") == "next"  # a new helper serves the next call
    finally:
        release.set()
        box.close()


def test_the_time_box_counts_from_the_start_of_the_call_not_from_its_wait_for_the_helper() -> None:
    """A call whose helper is still busy (here with another caller's call, in the agent with waiting for the CPU
    on a loaded machine) has not met the store yet: its time box starts when the helper starts it."""
    box = TimeBox("t", 0.5)
    outcomes: dict[str, object] = {}

    def slow_store() -> str:
        time.sleep(0.8)
        return "slow"

    def slow_caller() -> None:
        try:
            outcomes["slow"] = box.call(slow_store)
        except FleetUnavailable as error:
            outcomes["slow"] = error

    try:
        box.call(lambda: None)  # the helper thread exists and waits for a call
        thread = threading.Thread(target=slow_caller)
        thread.start()
        time.sleep(0.05)  # the slow call is in the helper; the next one waits behind it, not started
        assert box.call(lambda: "answered") == "answered"
        thread.join(30)
        assert "slow" in outcomes  # 0.8 s in the store: over its box, unless a loaded machine started it late
    finally:
        box.close()
