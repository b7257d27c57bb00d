"""Deadline trackers: every live deadline fires once, none fires after discard."""

from __future__ import annotations

import asyncio
import random
import threading
import time

from s3pool_plugins.core.deadlines import Deadline, ThreadDeadlines, loop_deadlines


def test_thread_deadlines_fire_in_time_and_once_also_when_added_concurrently() -> None:
    tracker = ThreadDeadlines("test-deadlines")
    fired: dict[int, int] = {}
    lock = threading.Lock()
    discarded: set[int] = set()

    def make(index: int, delay: float) -> Deadline:
        def callback() -> None:
            with lock:
                fired[index] = fired.get(index, 0) + 1

        return Deadline(time.monotonic() + delay, callback)

    def adder(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(200):
            index = seed * 1000 + n
            deadline = make(index, rng.choice([0.001, 0.02, 0.05, 0.2]) * rng.random())
            tracker.add(deadline)
            if rng.random() < 0.3 and tracker.discard(deadline):
                discarded.add(index)

    threads = [threading.Thread(target=adder, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Wait for the outcome, not for a time: the tracker empties before its thread has run the last callbacks,
    # and on a loaded machine that thread may wait long for a core. A wait that succeeds returns early.
    deadline = time.monotonic() + 30
    while (len(tracker) or len(fired) + len(discarded) < 800) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # room for a second (wrong) firing of the last callbacks to show
    assert len(tracker) == 0, "some deadline never fired"
    assert all(count == 1 for count in fired.values())
    assert not discarded & set(fired)
    assert len(fired) + len(discarded) == 800
    tracker.close()


def test_an_earlier_deadline_rearms_the_timer_and_close_then_add_restarts() -> None:
    tracker = ThreadDeadlines("test-rearm")
    late, early = threading.Event(), threading.Event()
    tracker.add(Deadline(time.monotonic() + 30, late.set))
    tracker.add(Deadline(time.monotonic() + 0.02, early.set))
    assert early.wait(30) and not late.is_set()
    tracker.close()
    again = threading.Event()
    tracker.add(Deadline(time.monotonic() + 0.01, again.set))
    assert again.wait(30)
    tracker.close()


def test_loop_deadlines_fire_on_the_loop() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        tracker = loop_deadlines(loop)
        assert loop_deadlines(loop) is tracker
        seen: list[str] = []
        kept = Deadline(loop.time() + 0.02, lambda: seen.append("kept"))
        dropped = Deadline(loop.time() + 0.01, lambda: seen.append("dropped"))
        tracker.add(kept)
        tracker.add(dropped)
        assert tracker.discard(dropped)
        await asyncio.sleep(0.05)
        assert not tracker.discard(kept)  # already expired
        return seen

    assert asyncio.run(main()) == ["kept"]
