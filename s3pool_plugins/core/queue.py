"""PriorityTaskQueue: a binary heap with exact linear aging.

The effective priority of a waiting item at time ``t`` is::

    priority + aging_rate * (t - enqueued_at)

Every item ages at the same rate, so the order of two items never depends on
``t``: ``a`` ranks above ``b`` at every instant exactly when
``a.priority - rate * a.enqueued_at > b.priority - rate * b.enqueued_at``.
The heap is therefore keyed on that constant and aging costs nothing: push,
pop and remove stay O(log n) (remove is lazy, amortised O(log n)). Among
equal keys the item pushed first comes out first (FIFO).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from heapq import heapify, heappop, heappush
from typing import Generic, Protocol, TypeVar

from .validation import number

T = TypeVar("T")

_KEY, _SEQ, _ITEM, _ALIVE = 0, 1, 2, 3

QueueEntry = list[object]  # [key, seq, item, alive]: opaque outside this module

MAX_AGING_RATE = 1e6
"""The largest aging rate (priority points per second): aged priorities stay finite floats."""


def validate_aging_rate(value: object, option: str = "aging_rate") -> float:
    """``value`` as an aging rate (a number >= 0 and <= :data:`MAX_AGING_RATE`), or raise naming ``option``."""
    return number(option, value, 0, MAX_AGING_RATE, unit=" (priority points per second of waiting)")


class QueueHandle:
    """Opaque reference to one queued item, used to remove it early."""

    __slots__ = ("_entry",)

    def __init__(self, entry: QueueEntry) -> None:
        self._entry = entry

    @property
    def queued(self) -> bool:
        """True while the item is still waiting in the queue."""
        return bool(self._entry[_ALIVE])


class TaskQueue(Protocol[T]):
    """What the scheduler needs of a queue: :class:`PriorityTaskQueue`, or :class:`~.fair_queue.FairQueue`."""

    @property
    def aging_rate(self) -> float: ...

    size: int
    """How many items are queued (what ``len()`` answers, without a Python call)."""

    def __len__(self) -> int: ...

    def __bool__(self) -> bool: ...

    def push_entry(self, item: T, priority: float = 0.0, enqueued_at: float | None = None) -> QueueEntry: ...

    def pop(self) -> T: ...

    def peek(self) -> T: ...

    def remove_entry(self, entry: QueueEntry) -> bool: ...

    def items(self) -> list[T]: ...

    def drain_items(self) -> list[T]: ...


_MAX_LANES = 8


class PriorityTaskQueue(Generic[T]):
    """Highest effective priority first; FIFO among equals.

    ``aging_rate`` is in priority points per second of waiting (0 disables
    aging). ``clock`` returns seconds and must be monotonic. The queue is not
    thread-safe: the scheduler serialises access with its own lock.

    Storage: entries are ordered by ``(key, seq)``. Fresh entries of up to
    eight distinct priorities go to per-priority FIFO lanes (a lane is sorted
    by construction, since its keys grow with the enqueue time); everything
    else (more priorities, entries re-entering with an earlier enqueue time)
    goes to a binary heap. A pop takes the smallest of the heap's top and the
    lanes' heads: O(log n + 8), and O(1) for the common single-priority case.
    """

    __slots__ = ("_heap", "_lanes", "size", "_dead", "_rate", "_clock", "_counter")

    def __init__(self, aging_rate: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        validate_aging_rate(aging_rate)
        self._heap: list[QueueEntry] = []
        self._lanes: dict[float, deque[QueueEntry]] = {}
        self.size = 0
        self._dead = 0
        self._rate = float(aging_rate)
        self._clock = clock
        self._counter = itertools.count()

    @property
    def aging_rate(self) -> float:
        """Priority points gained per second of waiting."""
        return self._rate

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def push(self, item: T, priority: float = 0.0, enqueued_at: float | None = None) -> QueueHandle:
        """Add ``item``; ``enqueued_at`` (clock seconds) defaults to now.

        Passing an earlier ``enqueued_at`` re-enters an item with the age it
        already had, as a retried task does.
        """
        return QueueHandle(self.push_entry(item, priority, enqueued_at))

    def push_entry(self, item: T, priority: float = 0.0, enqueued_at: float | None = None) -> QueueEntry:
        """:meth:`push` without the handle object: returns the raw entry, for :meth:`remove_entry`.

        For callers that keep one reference per item anyway (the scheduler).
        """
        if enqueued_at is None:
            enqueued_at = self._clock()
        key = -(priority - self._rate * enqueued_at)
        entry: QueueEntry = [key, next(self._counter), item, True]
        lanes = self._lanes
        lane = lanes.get(priority)
        self.size += 1
        if lane is not None:
            if not lane or lane[-1][_KEY] <= key:  # type: ignore[operator]
                lane.append(entry)
                return entry
        elif len(lanes) < _MAX_LANES:
            lanes[priority] = deque((entry,))
            return entry
        heappush(self._heap, entry)
        return entry

    def pop(self) -> T:
        """Remove and return the item of highest effective priority.

        Raises ``IndexError`` when the queue is empty.
        """
        source = self._best()
        if source is None:
            raise IndexError("pop from an empty PriorityTaskQueue")
        entry = heappop(source) if source is self._heap else source.popleft()  # type: ignore[union-attr]
        entry[_ALIVE] = False
        self.size -= 1
        item = entry[_ITEM]
        entry[_ITEM] = None  # the item may hold its entry: break the cycle
        return item  # type: ignore[return-value]

    def peek(self) -> T:
        """Return the next item without removing it (``IndexError`` if empty)."""
        source = self._best()
        if source is None:
            raise IndexError("peek into an empty PriorityTaskQueue")
        return source[0][_ITEM]  # type: ignore[return-value]

    def _best(self) -> list[QueueEntry] | deque[QueueEntry] | None:
        """The structure whose first entry is the best live one (dead heads are dropped)."""
        best: QueueEntry | None = None
        source: list[QueueEntry] | deque[QueueEntry] | None = None
        heap = self._heap
        while heap and not heap[0][_ALIVE]:
            heappop(heap)
            self._dead -= 1
        if heap:
            best, source = heap[0], heap
        empty = None
        for priority, lane in self._lanes.items():
            while lane and not lane[0][_ALIVE]:
                lane.popleft()
                self._dead -= 1
            if not lane:
                empty = priority if empty is None else empty
                continue
            head = lane[0]
            if best is None or head < best:
                best, source = head, lane
        if empty is not None:
            for priority in [p for p, lane in self._lanes.items() if not lane]:
                del self._lanes[priority]
        return source

    def remove(self, handle: QueueHandle) -> bool:
        """Withdraw a queued item; returns False if it already left the queue."""
        return self.remove_entry(handle._entry)

    def remove_entry(self, entry: QueueEntry) -> bool:
        """:meth:`remove` for an entry returned by :meth:`push_entry`."""
        if not entry[_ALIVE]:
            return False
        entry[_ALIVE] = False
        entry[_ITEM] = None
        self.size -= 1
        self._dead += 1
        if self._dead > 64 and self._dead > self.size:
            self._compact()
        return True

    def effective_priority(self, handle: QueueHandle, now: float | None = None) -> float:
        """The aged priority of a queued item at ``now`` (default: the clock)."""
        if now is None:
            now = self._clock()
        return -float(handle._entry[_KEY]) + self._rate * now  # type: ignore[arg-type]

    def items(self) -> list[T]:
        """The queued items, in no particular order."""
        entries = [*self._heap, *(entry for lane in self._lanes.values() for entry in lane)]
        return [entry[_ITEM] for entry in entries if entry[_ALIVE]]  # type: ignore[misc]

    def _live_entries(self) -> list[QueueEntry]:
        """The entries still queued, in no particular order (for :class:`~.fair_queue.FairQueue`)."""
        entries = [*self._heap, *(entry for lane in self._lanes.values() for entry in lane)]
        return [entry for entry in entries if entry[_ALIVE]]

    def drain_items(self) -> list[T]:
        """Remove every item and return them in dequeue order."""
        items: list[T] = []
        while self.size:
            items.append(self.pop())
        self._heap.clear()
        self._lanes.clear()
        self._dead = 0
        return items

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if entry[_ALIVE]]
        heapify(self._heap)
        for priority in list(self._lanes):
            alive = deque(entry for entry in self._lanes[priority] if entry[_ALIVE])
            if alive:
                self._lanes[priority] = alive
            else:
                del self._lanes[priority]
        self._dead = 0
