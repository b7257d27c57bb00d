"""One partition's side of the fleet agent: its pace, its slots and its learned state.

A :class:`FleetUnit` joins one scheduler of the pool (the pool's own, or a
partition's gate) to the fleet's :class:`~.backend.FleetPartition` of the
same key. Only the agent thread calls :meth:`FleetUnit.serve`; it calls the
backend through the agent's time box and takes the scheduler's lock only
for short bookkeeping, never around a backend call.

How a local decision maps to the fleet (see docs/fleet.md): the stored
record is the fleet's rate, which the fleet's token bucket enforces; the
local adaptive limit keeps deciding from what this member sees, at this
member's scale (its share: the fleet's rate divided by the members with
work). Members never convert an absolute local rate into a fleet rate: a
local cut is proposed as the same *relative* cut of the fleet's rate, and
rises are the fleet's own (:class:`~.rate.RatePolicy`: slow start while no
ceiling is known, fast up to the ceiling, slow probes past it), proposed
only while the fleet's rate holds this member back and after a calm spell
with no throttling this member saw. Every proposal is a compare-and-set on
the version this member last saw: one change per version, and a member whose
proposal lost adopts the winner's. Adopting a cut counts as a cut for the
local algorithm, so throttling still in flight from before it cuts no
further.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from ..limits.controller import LimitController
from ..scheduler import Scheduler
from .backend import FleetPartition, SharedLimit
from .pacer import FleetPacer
from .rate import FleetRate, RatePolicy

T = TypeVar("T")
Call = Callable[[Callable[[], T]], T]

MEMBERS_LIMIT = 1 << 30
"""The limit of the membership lease (each member with work holds one slot of it)."""

LEAD_TIME = 0.1
"""Seconds of this member's share of the fleet rate that it leases ahead of need (the token batch); a
member takes tokens at most once per half of it."""

SLOT_TTL = 5.0
"""Seconds a slot lease lasts without renewal: the slots of a killed process come back within it."""

RENEW_EVERY = SLOT_TTL / 5
"""Seconds between two renewals of a member's leases."""

COUNT_EVERY = 0.5
"""Seconds between two counts of the members with work."""

IDLE_AFTER = 2.0
"""Seconds without work after which a member gives back its membership (it no longer shares the rate)."""

SHARE_SAMPLE = 10
"""Attempts at the fleet's pace a member must have sent within an interval to judge a cut by the share of
them throttled (fewer: by its local limit's own measure)."""

SETTLE = 2.0
"""Adjustment intervals after a cut of the fleet's rate during which no member proposes another (answers to
attempts sent before it are still coming back; the local limit's own settle time)."""

USED = 0.8
"""The share of its part of the fleet's rate a member must have sent over the last adjustment interval for
the fleet's rate to rise: the fleet's bucket running dry is not enough (members take tokens in batches, and a
fleet held back by its hosts' CPU would climb to rates it never sends, then send them all at once when the
hosts free up)."""

RELEASE_AFTER = 0.5
"""Seconds slots stay unused before they are given back."""


class FleetUnit:
    """The fleet state of one partition of one pool (see the module docstring)."""

    def __init__(
        self,
        key: str,
        partition: str | None,
        scheduler: Scheduler,
        shared: FleetPartition,
        members: FleetPartition,
        *,
        member: str,
        controller: LimitController | None,
        fleet_concurrency: int | None,
        interval: float,
        clock: Callable[[], float],
        throttled: Callable[[], int],
    ) -> None:
        self.key = key
        self.partition = partition
        self.scheduler = scheduler
        self.shared = shared
        self._members_part = members
        self.member = member
        self.controller = controller
        self.fleet_concurrency = fleet_concurrency
        self.interval = interval
        self._clock = clock
        self.pacer = FleetPacer(1.0, LEAD_TIME / 2, clock)
        self._throttled = throttled
        self._throttles_seen = throttled()
        self._throttled_at = -math.inf
        self.fleet_rate: float | None = None
        self.fleet_ceiling: float | None = None
        self.members = 1
        self._last_count = 1
        self.version = 0
        self._changed_at = -math.inf
        self._read_at = -math.inf
        self._seen_rate: float | None = None
        self._share: float | None = None
        """This member's local rate when it last took on the fleet's (the base of its relative changes)."""
        self._binding_at = -math.inf
        self._cut_at = -math.inf
        self._granted = self._spent = 0
        self._history: deque[tuple[float, int, int]] = deque()
        """(when, fleet tokens spent, throttled attempts) per round, over about two intervals."""
        self.policy = RatePolicy(interval)
        self._synced = False
        self.held = 0
        self._fresh = True
        self._renewed_at = -math.inf
        self._surplus_since: float | None = None
        self._member_held = False
        self._counted_at = -math.inf
        self._busy_at = -math.inf
        self.next_at = -math.inf
        """When the agent should serve this unit again (after a partial token grant)."""
        scheduler.make_pacer = self._make_pacer

    def _make_pacer(self, rate: float) -> FleetPacer:
        self.pacer.set_rate(rate)
        return self.pacer

    # -- joined --------------------------------------------------------------

    def serve(self, call: Call[Any], now: float) -> None:
        """One round while the fleet is joined (every backend call through ``call``)."""
        queued, active, starved, tokens = self._look()
        self._spent = self._granted - tokens
        self._history.append((now, self._spent, self._throttled()))
        while len(self._history) > 2 and self._history[1][0] <= now - 2 * self.interval:
            self._history.popleft()
        busy = queued > 0 or active > 0 or starved > 0
        if busy:
            self._busy_at = now
        self._serve_membership(call, now, busy)
        if self.controller is not None:
            self._serve_learned(call, now)
        if self.fleet_concurrency is not None:
            self._serve_slots(call, now, queued, active)
        self._serve_tokens(call, now, queued, starved, tokens)

    def _look(self) -> tuple[int, int, int, int]:
        scheduler = self.scheduler
        with scheduler.lock:
            queued = scheduler.waiting_locked()
            pacer = self.pacer
            starved, pacer.starved = pacer.starved, 0
            return queued, scheduler.active, starved, pacer.tokens

    def _serve_membership(self, call: Call[Any], now: float, busy: bool) -> None:
        part, me = self._members_part, self.member
        recent = now - self._busy_at < IDLE_AFTER
        if recent and not self._member_held:
            self._member_held = call(lambda: part.lease_slots(me, 1, MEMBERS_LIMIT, SLOT_TTL)) > 0
            self._counted_at = -math.inf
        elif not recent and self._member_held:
            call(lambda: part.release_slots(me, 1))
            self._member_held = False
        if now - self._counted_at >= COUNT_EVERY:
            if self._member_held:
                self._member_held = call(lambda: part.renew_slots(me, SLOT_TTL)) > 0
            probe = me + "#count"
            free = call(lambda: part.lease_slots(probe, MEMBERS_LIMIT, MEMBERS_LIMIT, 1.0))
            call(lambda: part.release_slots(probe, MEMBERS_LIMIT))
            if free > MEMBERS_LIMIT // 2:  # else another member's count held the slots meanwhile: count again later
                count = max(1, MEMBERS_LIMIT - free)
                # a drop counts from the second count that shows it: after a store restarted empty, members
                # lease their membership again one round apart, and one low count would inflate this share
                self.members = max(count, min(self.members, self._last_count))
                self._last_count = count
                self._counted_at = now

    def _serve_learned(self, call: Call[Any], now: float) -> None:
        controller = self.controller
        assert controller is not None
        throttles = self._throttled()
        if throttles != self._throttles_seen:
            self._throttles_seen, self._throttled_at = throttles, now
        local = controller.learned(self.partition)
        if local is None:
            return
        limit, rate, ceiling = local
        if not self._synced:
            stored = call(self.shared.shared_limit)
            self._synced = True
            self._read_at = now
            if stored is not None:
                self._adopt(stored, now, join=True)
            elif self.version and self.fleet_rate is not None:  # restarted empty: rebuild with the fleet's rate
                self._rebuild(call, now, limit)
            else:
                self.version, self.fleet_rate, self._seen_rate = 0, None, None
                proposal = self._from_local(now, limit, rate, ceiling)
                if proposal is not None:
                    self._offer(call, now, proposal)
            return
        if rate != self._seen_rate:
            proposal = self._from_local(now, limit, rate, ceiling)
            self._seen_rate = rate
            if proposal is not None:
                self._offer(call, now, proposal)
            elif rate is None and self.fleet_rate is not None:  # a local undo unpaced it: the fleet's pace holds
                self._adopt(SharedLimit(self.fleet_rate, limit, self.fleet_ceiling, self.version), now)
            return
        if now - self._read_at >= self.interval / 2:
            stored = call(self.shared.shared_limit)
            self._read_at = now
            if stored is not None and stored.version != self.version:
                self._adopt(stored, now)
                return
            if stored is None and self.version:  # the store restarted empty: rebuild it from ours
                self._rebuild(call, now, limit)
                return
        current = self.fleet_rate
        if current is None or not self.version or now - self._binding_at > self.interval:
            return  # a rise only while the fleet uses all of its rate (its bucket ran dry lately)
        used = self._used_share(now, current)
        if used is None or used < USED:
            return  # ... and this member sent about its share: a fleet held back elsewhere (CPU) must not climb
        calm_for = now - max(self._changed_at, self._throttled_at)
        risen = self.policy.rise(FleetRate(current, self.fleet_ceiling), calm_for)
        if risen is not None:
            self._offer(call, now, SharedLimit(risen.rate, limit, risen.ceiling, self.version))

    def _from_local(self, now: float, limit: int, rate: float | None, ceiling: float | None) -> SharedLimit | None:
        """What the local limit's change (to ``rate``) proposes to the fleet; None: nothing (a local rise:
        the fleet's rate rises by :meth:`RatePolicy.rise` alone, so N members' probes never compound)."""
        current, share = self.fleet_rate, self._share
        if rate is None:
            return None  # unpaced locally (an undone cold-start cut, a long calm): the fleet keeps its pace
        if current is None or share is None:
            started = self.policy.start(rate)
            return SharedLimit(started.rate, limit, started.ceiling, self.version)
        if rate >= share or now - self._throttled_at > self.interval:
            return None  # a local rise, or a cut without throttling this member saw: no evidence for the fleet
        if now - self._cut_at < SETTLE * self.interval:
            return None  # throttling from before the fleet's last cut: one cut per settle time, fleet-wide
        fleet = FleetRate(current, self.fleet_ceiling)
        throttled = self._throttled_share(now)
        if throttled is not None:
            cut = self.policy.cut_from_share(fleet, *throttled)
        elif now - self._cut_at < (SETTLE + 2) * self.interval:
            # too few answers to the rate in force yet (the span starts after the last cut): the local limit's
            # own cut is a reaction (it halves on 503s), not a measure, and would land the fleet far too low.
            # The next local cut (throttling goes on) judges again, with more answers.
            return None
        else:  # a fleet too slow for a sample of its own within two intervals: the local limit's factor
            cut = self.policy.cut(fleet, share, rate, ceiling)
        return SharedLimit(cut.rate, limit, cut.ceiling, self.version)

    def _throttled_share(self, now: float) -> tuple[float, int] | None:
        """The share of this member's attempts at the fleet's pace throttled lately (fleet tokens spent are
        its attempts) and how many attempts it was measured on, or None if it sent too few to tell.

        The span is the last adjustment interval, stretched back up to the
        history's two intervals until it holds :data:`SHARE_SAMPLE` attempts:
        a member of a large fleet sends few per interval, and its local
        limit's own cut (the fallback) can be far off the fleet's measure.
        """
        since = now - self.interval
        start = self._cut_at + self.interval / 2  # answers to attempts sent at the rate before the cut: not this rate's
        for at, spent, throttles in reversed(self._history):
            if at > since:
                continue
            if at < start:
                break
            sent = self._spent - spent
            if sent >= SHARE_SAMPLE:
                return min(1.0, (self._throttles_seen - throttles) / sent), sent
        return None

    def _used_share(self, now: float, fleet_rate: float) -> float | None:
        """How much of its share of ``fleet_rate`` this member spent over about the last adjustment interval
        (1.0: all of it), or None before an interval of history."""
        since = now - self.interval
        for at, spent, _ in reversed(self._history):
            if at <= since:
                elapsed = now - at
                share = fleet_rate / self.members
                return (self._spent - spent) / (share * elapsed) if share * elapsed > 0 else None
        return None

    def _rebuild(self, call: Call[Any], now: float, limit: int) -> None:
        """Put this member's last fleet state back into a store that restarted empty (the fleet's rate,
        not this member's share of it)."""
        self.version = 0
        self._offer(call, now, SharedLimit(self.fleet_rate, limit, self.fleet_ceiling, 0))

    def _offer(self, call: Call[Any], now: float, proposal: SharedLimit) -> None:
        """Propose by compare-and-set, then take on whatever is stored (ours if it won)."""
        stored = call(lambda: self.shared.propose_limit(proposal))
        self._adopt(stored, now)

    def _accepted(self, stored: SharedLimit, now: float, local_rate: float | None) -> None:
        if stored.version != self.version:
            self._changed_at = now
            old = self.fleet_rate
            if stored.rate is not None and (old is None or stored.rate < old):
                self._cut_at = now
        self.version = stored.version
        self.fleet_ceiling = stored.ceiling
        self.fleet_rate = stored.rate
        self._seen_rate = self._share = local_rate

    def _adopt(self, stored: SharedLimit, now: float, join: bool = False) -> None:
        controller = self.controller
        assert controller is not None
        members = self.members
        rate = None if stored.rate is None else stored.rate / members
        ceiling = None if stored.ceiling is None else stored.ceiling / members
        controller.adopt(self.partition, rate, ceiling, stored.limit if join else None)
        local = controller.learned(self.partition)
        self._accepted(stored, now, None if local is None else local[1])

    def _serve_slots(self, call: Call[Any], now: float, queued: int, active: int) -> None:
        limit = self.fleet_concurrency
        assert limit is not None
        scheduler, shared, me = self.scheduler, self.shared, self.member
        if self._fresh:  # (re)joining: hold what the store says this member holds
            held = call(lambda: shared.lease_slots(me, 0, limit, SLOT_TTL))
            with scheduler.lock:
                running = scheduler.active
            if running > held:  # attempts started under local control: the store counts them as far as it can
                held = call(lambda: shared.lease_slots(me, running - held, limit, SLOT_TTL))
            self.held = held
            self._renewed_at = now
            self._fresh = False
            scheduler.set_cap(self.held)
        fair = max(1, math.ceil(limit / self.members))  # a member with work never holds the others' share
        target = min(scheduler.wanted_limit, active + queued, fair)
        if target > self.held:
            self.held = call(lambda: shared.lease_slots(me, target - self.held, limit, SLOT_TTL))
            self._renewed_at = now
            self._surplus_since = None
            scheduler.set_cap(self.held)
        elif target < self.held:
            if self._surplus_since is None:
                self._surplus_since = now
            elif now - self._surplus_since >= RELEASE_AFTER:
                # no new grants above the target; slots in use go back as their attempts finish (a saturated
                # member always has as many active as it holds: waiting for it to idle would starve the others)
                scheduler.set_cap(target)
                with scheduler.lock:
                    keep = max(target, scheduler.active)
                if keep < self.held:
                    self.held = call(lambda: shared.release_slots(me, self.held - keep))
                if self.held <= target:
                    self._surplus_since = None
        else:
            self._surplus_since = None
        if self.held and now - self._renewed_at >= RENEW_EVERY:
            held = call(lambda: shared.renew_slots(me, SLOT_TTL))
            self._renewed_at = now
            if held != self.held:  # the lease expired meanwhile (a slow round): hold what the store says
                self.held = held
                scheduler.set_cap(held)

    def _serve_tokens(self, call: Call[Any], now: float, queued: int, starved: int, tokens: int) -> None:
        scheduler = self.scheduler
        if scheduler.pacer is not self.pacer or now < self.next_at:
            return
        rate = self.fleet_rate
        if rate is None:
            local = self.pacer.rate
            rate = self.fleet_rate = local * self.members
        share = rate / self.members
        batch = max(1, math.ceil(share * LEAD_TIME))
        if not (queued or starved) or tokens >= batch:
            return
        burst = max(1.0, rate * 0.1, float(batch))
        grant = call(lambda: self.shared.take_tokens(batch - tokens, rate, burst))
        if grant.granted:
            self._granted += grant.granted
            with scheduler.lock:
                self.pacer.deposit(grant.granted)
            scheduler.dispatch()
        wait = LEAD_TIME / 2  # at most one take per half lead time: a batch covers the whole lead time
        if grant.granted < batch - tokens:  # the fleet's bucket ran dry: the fleet uses all of its rate
            self._binding_at = now
            wait = max(wait, min(grant.retry_after, self.interval))
        self.next_at = now + wait

    # -- joining and leaving -------------------------------------------------

    def join(self) -> None:
        """The fleet answers: spend fleet tokens, and read the learned state again at the next round.

        With a fleet-wide limit, no new attempt starts until the next round
        has read what the store says this member holds: a lease that expired
        while the store was away may be another member's by now.
        """
        with self.scheduler.lock:
            self.pacer.set_joined(True)
        if self.fleet_concurrency is not None:
            self.scheduler.set_cap(0)
        self._fresh = True
        self._synced = False
        self._member_held = False
        self._counted_at = -math.inf
        self._renewed_at = -math.inf
        self.next_at = -math.inf

    def leave(self) -> int:
        """The fleet is away: pace locally at this member's share; returns fleet tokens dropped.

        Slots are capped at what this member held, or its fair share of the
        fleet's limit if that is more (so a member that held none still runs:
        nothing hangs), never above a local limit.
        """
        with self.scheduler.lock:
            dropped = self.pacer.set_joined(False)
        limit = self.fleet_concurrency
        if limit is not None:
            self.scheduler.set_cap(max(self.held, math.ceil(limit / self.members)))
        self.scheduler.dispatch()
        return dropped

    def after_fork(self, member: str) -> None:
        """This is a forked child's copy (with a single thread): rejoin as ``member``, holding nothing.

        The parent's fleet tokens, slots and membership are forgotten here,
        never released (the parent holds them). The slot cap drops to 0 until
        this member's own lease. A scheduler whose lock a parent thread held
        at fork is left alone: it can never be used in the child anyway.
        """
        self.member = member
        self.held = 0
        self._member_held = False
        self._granted = self._spent = 0
        self._history.clear()
        self._throttles_seen = self._throttled()
        mutex = self.scheduler.mutex
        if not mutex.acquire(False):
            return
        mutex.release()
        with self.scheduler.lock:
            self.pacer.tokens = 0
            self.pacer.starved = 0
        self.join()

    def release(self, call: Call[Any]) -> None:
        """Give back this member's slots and membership (the pool is closing)."""
        me = self.member
        if self.held:
            call(lambda: self.shared.release_slots(me, self.held))
            self.held = 0
        if self._member_held:
            call(lambda: self._members_part.release_slots(me, 1))
            self._member_held = False
