"""FairQueue: weighted fair sharing of one pool between tenants.

Each backlogged tenant has its own :class:`PriorityTaskQueue`, so priorities
and exact linear aging apply *within* a tenant exactly as in a pool without
tenants. *Between* tenants the queue does start-time fair queuing (stride
scheduling):

- every tenant has a virtual ``pass``; serving one of its items advances it
  by ``1 / weight`` (in integer units of ``1 / 720720 / 2**16``: exact for
  every integer weight up to 16 and for their halves, quarters ..., so
  equal shares tie exactly and weights 1:3 interleave as 1, 3, 1, 3 ...);
- the next item comes from the backlogged tenant with the smallest pass
  (ties: the tenant that became backlogged first), found in a heap of
  tenants: O(log T) for T backlogged tenants, plus the tenant queue's own
  O(log n);
- the virtual time is the pass of the tenant served last. A tenant that
  becomes backlogged again starts at ``max(its pass, virtual time)``: idle
  time banks no credit, so a returning tenant can neither starve the others
  nor burst past its share.

Guarantee (tested): while two tenants ``i`` and ``j`` both stay backlogged,
the items served to them in any window satisfy
``|served_i / w_i - served_j / w_j| <= 1 / w_i + 1 / w_j``; with two tenants
that puts each within one item of its weighted share. Every backlogged
tenant is served within ``sum(w) / w_i`` rounds of items, so none starves.

Memory: the state of an idle tenant (its pass and served count) is kept for
configured tenants and for the most recently idle others, up to
:data:`IDLE_TENANTS_KEPT`; older idle states are dropped (such a tenant
simply starts at the virtual time when it comes back).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction
from heapq import heapify, heappop, heappush, heapreplace
from typing import Generic, TypeVar

from ..errors import ConfigurationError
from .context import validate_tenant
from .queue import _ALIVE, PriorityTaskQueue, QueueEntry
from .validation import in_range

T = TypeVar("T")

DEFAULT_TENANT = "default"
"""The tenant of work that names none (``Task.tenant is None``)."""

IDLE_TENANTS_KEPT = 1024
"""How many idle, unconfigured tenants keep their state (pass and served count)."""

_TENANT = 4  # index of the tenant state appended to each entry of a tenant's queue


MIN_WEIGHT = 1e-6
MAX_WEIGHT = 1e6
"""The accepted tenant weights: shares up to a million to one, with exact integer strides."""
WEIGHT_ACCEPTED = f"a finite number > 0: from {MIN_WEIGHT:g} to {MAX_WEIGHT:g}"


def validate_weight(value: object, option: str = "tenants") -> float:
    """Return ``value`` as a tenant weight (:data:`MIN_WEIGHT` to :data:`MAX_WEIGHT`) or raise naming ``option``."""
    if not in_range(value, MIN_WEIGHT, MAX_WEIGHT):
        raise ConfigurationError(option, f"{WEIGHT_ACCEPTED} (the tenant's weight)", value)
    return float(value)  # type: ignore[arg-type]


def validate_weights(weights: object, option: str = "tenants") -> dict[str, float]:
    """Check a mapping of tenant name to weight; raise naming ``option``."""
    if not isinstance(weights, Mapping):
        raise ConfigurationError(option, f"a mapping of tenant name (str) to weight ({WEIGHT_ACCEPTED})", weights)
    checked: dict[str, float] = {}
    for name, weight in weights.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(option, "tenant names as non-empty str keys", name)
        checked[name] = validate_weight(weight, f"{option}[{name!r}]")
    return checked


@dataclass(frozen=True)
class TenantStats:
    """One tenant's share of the queue, as :meth:`FairQueue.tenant_stats` reports it.

    - ``weight``: its weight (1.0 unless configured);
    - ``queued``: its items waiting now;
    - ``served``: its items that left the queue for a slot since fair sharing
      began (work that found a free slot at once never queued and is not
      counted; under saturation nearly everything queues).
    """

    name: str
    weight: float
    queued: int
    served: int


_SCALE = 720720 * 2**16
"""Virtual time units per unit of service at weight 1 (720720 is the lcm of 1..16)."""


def _stride(weight: float) -> int:
    return max(1, round(Fraction(_SCALE) / Fraction(weight)))


class _Tenant(Generic[T]):
    __slots__ = ("name", "weight", "stride", "pass_", "queue", "served", "heap_entry")

    def __init__(self, name: str, weight: float, queue: PriorityTaskQueue[T]) -> None:
        self.name = name
        self.weight = weight
        self.stride = _stride(weight)
        self.pass_ = 0
        self.queue = queue
        self.served = 0
        self.heap_entry: list[object] | None = None
        """Its ``[pass, seq, tenant]`` entry in the tenant heap while backlogged."""


class FairQueue(Generic[T]):
    """Weighted fair queuing between tenants, priority order with aging within each.

    The interface is :class:`PriorityTaskQueue`'s (``push_entry``, ``pop``,
    ``peek``, ``remove_entry``, ``items``, ``drain_items``, ``len``) with a
    ``tenant`` argument on push. ``tenant=None`` asks ``tenant_of(item)``
    (when given), and otherwise means :data:`DEFAULT_TENANT`. Priorities only
    order items of the same tenant. ``weights`` maps tenant names to weights
    (finite numbers > 0); other tenants weigh 1.0. Not thread-safe: the
    scheduler serialises access with its lock.
    """

    __slots__ = (
        "_rate",
        "_clock",
        "_weights",
        "_tenant_of",
        "_tenants",
        "_idle",
        "_heap",
        "_dead",
        "size",
        "_vtime",
        "_seq",
    )

    def __init__(
        self,
        aging_rate: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        weights: Mapping[str, float] | None = None,
        *,
        tenant_of: Callable[[T], str | None] | None = None,
    ) -> None:
        PriorityTaskQueue(aging_rate)  # validates the rate
        self._rate = float(aging_rate)
        self._clock = clock
        self._weights = validate_weights(weights or {})
        self._tenant_of = tenant_of
        self._tenants: dict[str, _Tenant[T]] = {}
        self._idle: OrderedDict[str, None] = OrderedDict()  # idle unconfigured tenants, oldest first
        self._heap: list[list[object]] = []
        self._dead = 0
        self.size = 0
        self._vtime = 0
        self._seq = itertools.count()

    @classmethod
    def adopting(
        cls,
        queue: PriorityTaskQueue[T],
        weights: Mapping[str, float] | None = None,
        *,
        tenant_of: Callable[[T], str | None] | None = None,
    ) -> FairQueue[T]:
        """A fair queue whose default tenant takes over ``queue`` and its entries.

        Entries already returned by ``queue.push_entry`` stay valid for
        :meth:`remove_entry`; ``queue`` must not be used directly afterwards.
        """
        fair: FairQueue[T] = cls(queue.aging_rate, queue._clock, weights, tenant_of=tenant_of)
        state = fair._state(DEFAULT_TENANT)
        state.queue = queue
        for entry in queue._live_entries():
            entry.append(state)
        fair.size = len(queue)
        if fair.size:
            fair._activate(state)
        return fair

    # -- PriorityTaskQueue's interface -----------------------------------

    @property
    def aging_rate(self) -> float:
        """Priority points gained per second of waiting (within a tenant)."""
        return self._rate

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def push_entry(
        self, item: T, priority: float = 0.0, enqueued_at: float | None = None, tenant: str | None = None
    ) -> QueueEntry:
        """Queue ``item`` for ``tenant``; returns the entry for :meth:`remove_entry`.

        ``enqueued_at`` (clock seconds, default now) ages the item within its
        tenant, as in :meth:`PriorityTaskQueue.push`.
        """
        if tenant is None:
            tenant_of = self._tenant_of
            tenant = (tenant_of(item) if tenant_of is not None else None) or DEFAULT_TENANT
        state = self._tenants.get(tenant)
        if state is None:
            state = self._state(tenant)
        entry = state.queue.push_entry(item, priority, enqueued_at)
        entry.append(state)
        self.size += 1
        if state.heap_entry is None:
            self._activate(state)
        return entry

    def pop(self) -> T:
        """Remove and return the next item: the best of the tenant with the smallest pass.

        Raises ``IndexError`` when the queue is empty.
        """
        state = self._next_tenant()
        if state is None:
            raise IndexError("pop from an empty FairQueue")
        item = state.queue.pop()
        self.size -= 1
        state.served += 1
        heap_entry = state.heap_entry
        assert heap_entry is not None
        self._vtime = state.pass_
        state.pass_ += state.stride
        if state.queue:
            heap_entry[0] = state.pass_
            heapreplace(self._heap, heap_entry)
        else:
            heappop(self._heap)
            self._deactivate(state)
        return item

    def peek(self) -> T:
        """The item :meth:`pop` would return (``IndexError`` if empty)."""
        state = self._next_tenant()
        if state is None:
            raise IndexError("peek into an empty FairQueue")
        return state.queue.peek()

    def remove_entry(self, entry: QueueEntry) -> bool:
        """Withdraw a queued item; False if it already left the queue. Charges its tenant nothing."""
        if not entry[_ALIVE]:
            return False
        state: _Tenant[T] = entry[_TENANT]  # type: ignore[assignment]
        state.queue.remove_entry(entry)
        self.size -= 1
        if not state.queue and state.heap_entry is not None:
            state.heap_entry[2] = None  # left the heap (lazily)
            self._dead += 1
            self._deactivate(state)
            if self._dead > 64 and self._dead > len(self._heap) // 2:
                self._heap = [e for e in self._heap if e[2] is not None]
                self._heap.sort()
                self._dead = 0
        return True

    def items(self) -> list[T]:
        """The queued items, in no particular order."""
        return [item for state in self._backlogged() for item in state.queue.items()]

    def drain_items(self) -> list[T]:
        """Remove every item and return them in dequeue order."""
        items: list[T] = []
        while self.size:
            items.append(self.pop())
        return items

    # -- tenants ---------------------------------------------------------

    @property
    def virtual_time(self) -> float:
        """The pass of the tenant served last."""
        return self._vtime / _SCALE

    def weight(self, tenant: str) -> float:
        """The weight of ``tenant`` (1.0 unless configured)."""
        return self._weights.get(tenant, 1.0)

    def set_weight(self, tenant: str, weight: float) -> None:
        """Change the weight of ``tenant``, at once: its pending lag is rescaled (stride scheduling's rule)."""
        weight = validate_weight(weight, "weight")
        self._weights[validate_tenant(tenant)] = weight
        self._idle.pop(tenant, None)
        state = self._tenants.get(tenant)
        if state is not None:
            old_stride = state.stride
            state.weight = weight
            state.stride = _stride(weight)
            lag = state.pass_ - self._vtime  # service already charged at the old weight, not yet used
            if lag > 0:
                state.pass_ = self._vtime + lag * state.stride // old_stride
                if state.heap_entry is not None:
                    state.heap_entry[0] = state.pass_
                    heapify(self._heap)

    def tenant_stats(self) -> dict[str, TenantStats]:
        """Per tenant: weight, queued and served, for configured and known tenants."""
        names = list(self._weights) + [name for name in self._tenants if name not in self._weights]
        stats = {}
        for name in names:
            state = self._tenants.get(name)
            stats[name] = TenantStats(
                name=name,
                weight=self.weight(name),
                queued=0 if state is None else len(state.queue),
                served=0 if state is None else state.served,
            )
        return stats

    # -- internals -------------------------------------------------------

    def _state(self, tenant: str) -> _Tenant[T]:
        queue: PriorityTaskQueue[T] = PriorityTaskQueue(self._rate, self._clock)
        state = _Tenant(tenant, self._weights.get(tenant, 1.0), queue)
        state.pass_ = self._vtime
        self._tenants[tenant] = state
        return state

    def _activate(self, state: _Tenant[T]) -> None:
        self._idle.pop(state.name, None)
        if state.pass_ < self._vtime:
            state.pass_ = self._vtime  # idle time banks no credit
        heap_entry: list[object] = [state.pass_, next(self._seq), state]
        state.heap_entry = heap_entry
        heappush(self._heap, heap_entry)

    def _deactivate(self, state: _Tenant[T]) -> None:
        state.heap_entry = None
        if state.name in self._weights:
            return
        idle = self._idle
        idle[state.name] = None
        while len(idle) > IDLE_TENANTS_KEPT:
            name, _ = idle.popitem(last=False)
            del self._tenants[name]

    def _next_tenant(self) -> _Tenant[T] | None:
        heap = self._heap
        while heap and heap[0][2] is None:
            heappop(heap)
            self._dead -= 1
        return heap[0][2] if heap else None  # type: ignore[return-value]

    def _backlogged(self) -> Iterator[_Tenant[T]]:
        for heap_entry in self._heap:
            state = heap_entry[2]
            if state is not None:
                yield state  # type: ignore[misc]
