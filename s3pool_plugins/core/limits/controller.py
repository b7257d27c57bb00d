"""The limiter's side of adaptive concurrency: gather signals, ask the algorithm, apply.

One :class:`LimitController` per pool with ``concurrency="auto"``. It keeps
one adaptive state for the pool and, with ``auto_tuning.scope`` set to
``"bucket"`` or ``"prefix"``, one per partition. A partition's state comes
with a *gate*: a scheduler of its own (same priorities and aging) that an
attempt passes before it queues for the pool's slot, so a throttled prefix
waits at its own gate and never occupies the pool's slots meanwhile.

Signals are folded into counters on the attempt's thread (one short lock);
an evaluation runs on that same thread when the state's interval has passed,
or at once on throttling or a timeout (at most once per ``min_gap`` after an
evaluation that saw losses: the first loss after a calm spell is acted on at once).

Each change of an algorithm's ``state`` (``AdaptiveLimit.state``) is logged
once at INFO with its reason, a change of pace or limit that cuts throughput
by more than half at WARNING, other changes at DEBUG (logger
``s3pool_plugins.limits``); logs and hook announcements go out after the
lock is released.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..queue import PriorityTaskQueue, TaskQueue
from ..scheduler import Scheduler, Waiter
from .base import FixedLimit, Limit
from .cause import ThrottleCause
from .history import LimitChange
from .memory import memory_fraction
from .options import AutoTuning
from .signals import LimitDecision, LimitSignal

Apply = Callable[[Scheduler, LimitDecision], None]
Announce = Callable[[LimitChange], None]

log = logging.getLogger("s3pool_plugins.limits")

_GOODPUT_SPAN = 1.0
_RECENT_MAX = 20_000


@dataclass
class _Outbox:
    """What an evaluation has to announce and log once the controller's lock is released."""

    changes: list[LimitChange] = field(default_factory=list)
    logs: list[tuple[int, str]] = field(default_factory=list)


def _cause(algorithm: Limit) -> ThrottleCause[object] | None:
    cause = getattr(algorithm, "cause", None)
    return cause if isinstance(cause, ThrottleCause) else None


@dataclass
class _State:
    """One adaptive state: its algorithm, its scheduler and what it saw since the last evaluation."""

    algorithm: Limit
    scheduler: Scheduler
    since: float
    successes: int = 0
    rtt_sum: float = 0.0
    rtt_min: float = math.inf
    throttles: int = 0
    timeouts: int = 0
    peak_inflight: int = 0
    users: int = 0
    """Calls that may still pass this state's gate (between ``enter`` and ``leave``)."""
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT_MAX))
    ended: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT_MAX))

    @staticmethod
    def note(times: deque[float], now: float) -> None:
        times.append(now)
        while now - times[0] > _GOODPUT_SPAN:
            times.popleft()

    cut_at: float = -math.inf
    lossy_at: float = -math.inf
    """When an evaluation last saw losses: the next one for losses waits ``min_gap`` after it."""

    def per_second(self, times: deque[float], now: float) -> tuple[float, float]:
        """Events per second over the last second, or since the last throttling cut or the first event
        if later (what came before a cut was sent at another rate), and that span."""
        while times and now - times[0] > _GOODPUT_SPAN:
            times.popleft()
        if not times:
            return 0.0, 0.0
        start, count = times[0], len(times)
        if self.cut_at > start:
            start = self.cut_at
            count = sum(1 for t in times if t >= start)
        span = now - start
        return count / max(span, 0.1), span

    def reset(self, now: float) -> None:
        self.since = now
        self.successes = self.throttles = self.timeouts = 0
        self.rtt_sum = 0.0
        self.rtt_min = math.inf
        self.peak_inflight = self.scheduler.active


class LimitController:
    """Feeds an adaptive :class:`Limit` per state and applies its decisions."""

    def __init__(
        self,
        settings: AutoTuning,
        scheduler: Scheduler,
        make_algorithm: Callable[[str | None], Limit],
        clock: Callable[[], float],
        call_later: Callable[[float, Callable[[], None]], object],
        announce: Announce,
        *,
        history_size: int = 1000,
        name: str = "s3pool",
        aging_rate: float = 0.0,
        read_memory: Callable[[], float | None] = memory_fraction,
        make_queue: Callable[[], TaskQueue[Waiter]] | None = None,
    ) -> None:
        self.settings = settings
        self._name = name
        self._forgotten = (0, 0)
        """Throttling answers judged caused and ambient by states no longer kept (forgotten or pinned)."""
        self._clock = clock
        self._call_later = call_later
        self._announce = announce
        self._make_algorithm = make_algorithm
        self._aging_rate = aging_rate
        self._make_queue = make_queue or (lambda: PriorityTaskQueue(self._aging_rate, self._clock))
        self._read_memory = read_memory
        self._lock = threading.Lock()
        self._history: deque[LimitChange] = deque(maxlen=history_size)
        self._memory: tuple[float, float | None] = (-math.inf, None)
        now = clock()
        algorithm = make_algorithm(None)
        self._pool_state = _State(algorithm, scheduler, now)
        scheduler.set_limit(self._bounded(algorithm.limit))
        self._partitions: OrderedDict[str, _State] = OrderedDict()
        self._paused = False
        self._stop_error: Callable[[], BaseException] | None = None
        self.on_gate: Callable[[str, Scheduler], None] | None = None
        """Called (under the controller's lock: it must be quick and must not block) with each partition's
        new gate, before any call passes it (the fleet agent attaches to it)."""

    # -- signals -----------------------------------------------------------

    def on_success(self, partition: str | None, rtt: float) -> None:
        """An attempt succeeded after ``rtt`` seconds (under ``partition``'s state, if it has one)."""
        changes = _Outbox()
        with self._lock:
            for state in self._states_of(partition):
                state.successes += 1
                now = self._clock()
                state.note(state.recent, now)
                state.note(state.ended, now)
                state.rtt_sum += rtt
                if rtt < state.rtt_min:
                    state.rtt_min = rtt
                self._note_inflight(state)
                self._maybe_evaluate(state, partition if state is not self._pool_state else None, False, changes)
        self._publish(changes)

    def on_drop(self, partition: str | None, throttling: bool) -> None:
        """An attempt failed by throttling (``throttling=True``) or a timeout.

        The loss is charged to the narrowest state: the partition's if it has
        one, else the pool's.
        """
        changes = _Outbox()
        with self._lock:
            states = self._states_of(partition)
            state = states[-1]
            if throttling:
                state.throttles += 1
            else:
                state.timeouts += 1
            state.note(state.ended, self._clock())
            self._note_inflight(state)
            self._maybe_evaluate(state, partition if state is not self._pool_state else None, True, changes)
        self._publish(changes)

    # -- partitions --------------------------------------------------------

    def enter(self, partition: str | None) -> Scheduler | None:
        """The gate a call under ``partition`` passes before the pool's slot, or None (no partitions).

        The call counts as a user of the partition's state until
        :meth:`leave`: a state with users is never forgotten, so every
        attempt of a call passes the same gate. The algorithm (which may
        come from a plugin's hook) is made outside the controller's lock.
        """
        if partition is None or self.settings.scope == "pool":
            return None
        with self._lock:
            state = self._partitions.get(partition)
            if state is not None:
                self._partitions.move_to_end(partition)
                state.users += 1
                return state.scheduler
        algorithm = self._make_algorithm(partition)
        scheduler = Scheduler(self._bounded(algorithm.limit), self._make_queue())
        with self._lock:
            state = self._partitions.get(partition)
            if state is None:  # else another thread made it meanwhile: use that one
                if self._stop_error is not None:
                    scheduler.stop(self._stop_error)
                elif self._paused:
                    scheduler.set_paused(True)
                state = _State(algorithm, scheduler, self._clock())
                if self.on_gate is not None:
                    self.on_gate(partition, scheduler)
                self._partitions[partition] = state
                state.users += 1
                self._forget_idle()
            else:
                state.users += 1
            return state.scheduler

    def leave(self, partition: str | None) -> None:
        """A call that :meth:`enter` gave a gate has ended."""
        if partition is None:
            return
        with self._lock:
            state = self._partitions.get(partition)
            if state is not None and state.users > 0:
                state.users -= 1

    def gate(self, partition: str | None) -> Scheduler | None:
        """The gate of ``partition`` now, without becoming its user (for inspection), or None."""
        with self._lock:
            state = None if partition is None else self._partitions.get(partition)
            return None if state is None else state.scheduler

    def set_paused(self, paused: bool) -> None:
        """Pause or resume every gate, and those made later (the pool is pausing or resuming)."""
        with self._lock:
            self._paused = paused
            gates = [state.scheduler for state in self._partitions.values()]
        for gate in gates:
            gate.set_paused(paused)

    def partitions(self) -> dict[str, tuple[int, float | None]]:
        """Each partition's current limit and pacing rate."""
        with self._lock:
            return {key: (s.scheduler.limit, s.algorithm.rate) for key, s in self._partitions.items()}

    def gates(self) -> list[Scheduler]:
        """The partitions' gates now."""
        with self._lock:
            return [state.scheduler for state in self._partitions.values()]

    def throttling(self) -> tuple[int, int]:
        """Throttling answers judged so far: ``(caused, ambient)``, summed over every state (see
        :class:`~s3pool_plugins.core.limits.cause.ThrottleCause`). Both only grow. Algorithms that do
        not judge causes (a plugin's) add nothing."""
        with self._lock:
            caused, ambient = self._forgotten
            for state in [self._pool_state, *self._partitions.values()]:
                cause = _cause(state.algorithm)
                if cause is not None:
                    caused += cause.caused
                    ambient += cause.ambient_count
            return caused, ambient

    def _keep_counts(self, algorithm: Limit) -> None:
        cause = _cause(algorithm)
        if cause is not None:
            caused, ambient = self._forgotten
            self._forgotten = (caused + cause.caused, ambient + cause.ambient_count)

    def learned(self, partition: str | None) -> tuple[int, float | None, float | None] | None:
        """The learned state of ``partition`` (None: the pool's): its limit, pacing rate and ceiling (attempts
        per second, or None), or None if that partition has no state now."""
        with self._lock:
            state = self._pool_state if partition is None else self._partitions.get(partition)
            if state is None:
                return None
            return state.scheduler.wanted_limit, state.algorithm.rate, getattr(state.algorithm, "ceiling", None)

    def adopt(self, partition: str | None, rate: float | None, ceiling: float | None, limit: int | None = None) -> bool:
        """Make ``partition``'s algorithm (None: the pool's) take on a learned state decided elsewhere, and
        apply it. False if there is no such state, or its algorithm cannot adopt (a plugin's, or a pinned
        limit). The change is recorded and announced with the reason ``"fleet"``."""
        outbox = _Outbox()
        with self._lock:
            state = self._pool_state if partition is None else self._partitions.get(partition)
            adopt = None if state is None else getattr(state.algorithm, "adopt", None)
            if state is None or adopt is None:
                return False
            now = self._clock()
            old_limit, old_rate = state.scheduler.wanted_limit, state.algorithm.rate
            adopt(rate, ceiling, now, limit)
            new_limit, new_rate = self._bounded(state.algorithm.limit), state.algorithm.rate
            if new_limit != old_limit:
                state.scheduler.set_limit(new_limit)
            if new_rate != old_rate or (new_rate is not None and state.scheduler.pacer is None):
                state.scheduler.set_pacing(new_rate, self._call_later)
            if new_limit != old_limit or new_rate != old_rate:
                change = LimitChange(now, partition, old_limit, new_limit, old_rate, new_rate, "fleet")
                self._history.append(change)
                outbox.changes.append(change)
        self._publish(outbox)
        return True

    def history(self) -> list[LimitChange]:
        """The recorded changes, oldest first."""
        with self._lock:
            return list(self._history)

    def pin(self, limit: int) -> LimitChange:
        """Hold the pool's own limit at ``limit`` from now on (``set_concurrency``): no more adapting, no pacing.

        Partition states keep adapting. Returns the change, also kept in the
        history; the caller sets the limit and announces it.
        """
        with self._lock:
            state = self._pool_state
            old_rate = state.algorithm.rate
            self._keep_counts(state.algorithm)
            state.algorithm = FixedLimit(limit)
            state.scheduler.set_pacing(None)
            change = LimitChange(self._clock(), None, state.scheduler.limit, limit, old_rate, None, "set_concurrency")
            self._history.append(change)
            return change

    def stop(self, error_factory: Callable[[], BaseException]) -> None:
        """Reject whatever waits at a partition gate (the pool is stopping)."""
        with self._lock:
            self._stop_error = error_factory
            gates = [state.scheduler for state in self._partitions.values()]
        for gate in gates:
            gate.stop(error_factory)

    # -- internals ---------------------------------------------------------

    def _states_of(self, partition: str | None) -> list[_State]:
        state = None if partition is None else self._partitions.get(partition)
        return [self._pool_state] if state is None else [self._pool_state, state]

    @staticmethod
    def _note_inflight(state: _State) -> None:
        active = state.scheduler.active
        if active > state.peak_inflight:
            state.peak_inflight = active

    def _forget_idle(self) -> None:
        """Drop the least recently used states beyond ``max_partitions`` that no call uses."""
        excess = len(self._partitions) - self.settings.max_partitions
        if excess <= 0:
            return
        for key, state in list(self._partitions.items()):
            if state.users == 0:
                self._keep_counts(state.algorithm)
                del self._partitions[key]
                excess -= 1
                if excess == 0:
                    return

    def _maybe_evaluate(self, state: _State, partition: str | None, dropped: bool, changes: _Outbox) -> None:
        now = self._clock()
        elapsed = now - state.since
        interval = self.settings.adjustment_interval
        if elapsed < interval and not (dropped and now - state.lossy_at >= self._min_gap(state)):
            return
        successes = state.successes
        goodput, span = state.per_second(state.recent, now)
        signal = LimitSignal(
            at=now,
            interval=max(elapsed, 1e-9),
            successes=successes,
            rtt_mean=state.rtt_sum / successes if successes else None,
            rtt_min=state.rtt_min if successes else None,
            throttles=state.throttles,
            timeouts=state.timeouts,
            peak_inflight=state.peak_inflight,
            limit=state.scheduler.limit,
            goodput=goodput,
            goodput_span=span,
            offered=state.per_second(state.ended, now)[0],
            rate=state.algorithm.rate,
            memory_fraction=self._memory_fraction(now) if partition is None else None,
        )
        if signal.drops:
            state.lossy_at = now
        state.reset(now)
        old_limit, old_rate = state.scheduler.wanted_limit, state.algorithm.rate
        old_mode = getattr(state.algorithm, "state", None)
        decision = state.algorithm.update(signal)
        self._note_mode(state.algorithm, old_mode, partition, signal, changes)
        if decision is None:
            return
        new_limit = self._bounded(decision.limit)
        if new_limit != old_limit:
            state.scheduler.set_limit(new_limit)
        if decision.rate != old_rate or (decision.rate is not None and state.scheduler.pacer is None):
            state.scheduler.set_pacing(decision.rate, self._call_later)
        if decision.reason == "throttling" and decision.rate != old_rate:
            state.cut_at = now
        change = LimitChange(now, partition, old_limit, new_limit, old_rate, decision.rate, decision.reason)
        self._history.append(change)
        changes.changes.append(change)
        before = old_rate if old_rate is not None else signal.offered
        halved = new_limit < old_limit / 2 or (decision.rate is not None and before > 0 and decision.rate < before / 2)
        level = logging.WARNING if halved else logging.DEBUG
        if log.isEnabledFor(level):
            changes.logs.append((level, f"{self._where(partition)}: {_describe(change)}"))

    def _where(self, partition: str | None) -> str:
        return f"pool {self._name!r}" + ("" if partition is None else f", partition {partition!r}")

    def _note_mode(
        self, algorithm: Limit, old: object, partition: str | None, signal: LimitSignal, outbox: _Outbox
    ) -> None:
        """Log a change of the algorithm's state (``AdaptiveLimit.state``) once, with its reason, at INFO."""
        new = getattr(algorithm, "state", None)
        if new == old or not isinstance(new, str) or not log.isEnabledFor(logging.INFO):
            return
        cause = _cause(algorithm)
        verdict = None if cause is None else cause.last_verdict
        share = f"{signal.throttles} of {signal.throttles + signal.successes} attempts throttled"
        if new == "testing":
            why = f"throttling ({share} lately): cutting, and testing whether the cut lowers it"
        elif old == "testing" and new == "ambient" and verdict is not None:
            why = (
                f"the cut had no effect (throttled {verdict.before:.1%} before, {verdict.after:.1%} after): "
                "ambient throttling the pool does not cause; the cut is undone and not repeated for it"
            )
        elif old == "testing" and verdict is not None:
            why = (
                f"the cut works (throttled {verdict.before:.1%} before, {verdict.after:.1%} after): "
                "the pool's rate caused it; the cut is kept"
            )
        elif new == "unpaced":
            why = "no throttling for a long calm: pacing ended"
        else:
            why = f"now {new}"
        outbox.logs.append((logging.INFO, f"{self._where(partition)}: {old} -> {new}: {why}"))

    def _bounded(self, limit: float) -> int:
        """``limit`` within [min_concurrency, max_concurrency]: a plugin's algorithm can neither stall nor flood."""
        settings = self.settings
        return max(settings.min_concurrency, min(settings.max_concurrency, int(limit)))

    def _min_gap(self, state: _State) -> float:
        """The shortest time between two evaluations triggered by losses."""
        rtt = state.rtt_sum / state.successes if state.successes else 0.0
        return max(0.05, 2 * rtt)

    def _memory_fraction(self, now: float) -> float | None:
        if self.settings.target_memory_percent is None:
            return None
        read_at, value = self._memory
        if now - read_at >= self.settings.adjustment_interval:
            value = self._read_memory()
            self._memory = (now, value)
        return value

    def _publish(self, outbox: _Outbox) -> None:
        for level, message in outbox.logs:
            log.log(level, "s3pool: %s", message)
        for change in outbox.changes:
            self._announce(change)


def _describe(change: LimitChange) -> str:
    """``change`` in words: the limit and pace before and after, and why."""

    def pace(rate: float | None) -> str:
        return "unpaced" if rate is None else f"{rate:.3g}/s"

    return (
        f"limit {change.old} -> {change.new}, pace {pace(change.old_rate)} -> {pace(change.new_rate)} ({change.reason})"
    )
