"""PriorityTaskQueue: order, FIFO among equals, exact aging, removal."""

from __future__ import annotations

import pytest

from s3pool_plugins import PriorityTaskQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_higher_priority_first_and_fifo_among_equals() -> None:
    queue: PriorityTaskQueue[str] = PriorityTaskQueue(aging_rate=0, clock=FakeClock())
    for name, priority in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1)]:
        queue.push(name, priority)
    assert [queue.pop() for _ in range(5)] == ["b", "d", "a", "c", "e"]
    with pytest.raises(IndexError):
        queue.pop()


def test_aging_lets_an_old_task_overtake_a_newer_higher_one() -> None:
    clock = FakeClock()
    queue: PriorityTaskQueue[str] = PriorityTaskQueue(aging_rate=2.0, clock=clock)
    old = queue.push("old", 0)
    clock.now += 10  # old has aged by 20 points
    new = queue.push("new", 15)
    assert queue.effective_priority(old) == pytest.approx(20)
    assert queue.effective_priority(new) == pytest.approx(15)
    assert queue.pop() == "old"
    assert queue.pop() == "new"


def test_aging_tie_keeps_fifo() -> None:
    clock = FakeClock()
    queue: PriorityTaskQueue[str] = PriorityTaskQueue(aging_rate=1.0, clock=clock)
    queue.push("first", 0)
    clock.now += 5
    queue.push("second", 5)  # equal effective priority from now on
    assert queue.pop() == "first"


def test_push_with_earlier_enqueue_time_keeps_age() -> None:
    clock = FakeClock()
    queue: PriorityTaskQueue[str] = PriorityTaskQueue(aging_rate=1.0, clock=clock)
    queue.push("fresh", 3)
    queue.push("retried", 0, enqueued_at=clock.now - 10)
    assert queue.pop() == "retried"


def test_remove_and_len() -> None:
    queue: PriorityTaskQueue[int] = PriorityTaskQueue()
    handles = [queue.push(i, i % 3) for i in range(200)]
    for handle in handles[::2]:
        assert queue.remove(handle)
        assert not handle.queued
        assert not queue.remove(handle)
    assert len(queue) == 100
    popped = queue.drain_items()
    assert sorted(popped) == list(range(1, 200, 2))
    assert len(queue) == 0 and not queue


def test_peek_does_not_remove() -> None:
    queue: PriorityTaskQueue[str] = PriorityTaskQueue()
    with pytest.raises(IndexError):
        queue.peek()
    handle = queue.push("x", 1)
    queue.push("y", 2)
    assert queue.peek() == "y"
    assert len(queue) == 2
    queue.remove(handle)
    assert queue.pop() == "y"


def test_negative_aging_rate_rejected() -> None:
    with pytest.raises(ValueError, match="aging_rate"):
        PriorityTaskQueue(aging_rate=-1)
