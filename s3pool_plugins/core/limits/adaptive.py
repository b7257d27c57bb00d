"""The default adaptive limit: a loss signal, a latency gradient and a memory guard.

Each evaluation reacts to the strongest signal present, in this order:

1. **Throttling** (the service answered "slow down") clearly above the
   ambient level :class:`~.cause.ThrottleCause` learned: the requests the
   service accepted over the last second or so are its capacity. The cut is
   a hypothesis: ``cause`` judges it from the throttling share after it,
   and a cut that had no effect is undone (reason ``"ambient"``); a share
   that rose clearly, or a cut that hardly lowered what was sent, cuts
   deeper. The pool
   starts pacing attempts at ``pace_margin`` (90%) of that rate and
   remembers it as the ceiling. Throttling while probing a little past the
   ceiling (less than twice it) cuts back from the ceiling: the last
   second's successes then count a burst allowance the service refilled
   while the pool stayed below it. The first throttling of a new state
   (a cold start) that comes after a throttle-free stretch (a burst
   allowance spent) is estimated from all successes so far, taking the
   burst as ``burst`` seconds of the rate (:meth:`AdaptiveLimit._cold_estimate`);
   with less than half a second of successes otherwise, it paces at half
   the rate attempts were ending, and measures at the next throttling. A cut
   leaves the limit room for its pace (twice the pace times the round trip,
   within ``max_concurrency``): the pace, not the limit, holds the rate. Throttling that is
   still in flight from before a cut (within ``settle_time`` of it) cuts
   no further: ``settle_time`` defaults to two adjustment intervals, long
   enough for retries that were waiting out a backoff to come back. The
   next throttling after it measures the accepted rate since the cut.
2. **Timeouts**: a multiplicative decrease of the limit (``backoff``).
3. **Memory** above ``target_memory_percent``: the limit shrinks by 10%.
4. **Calm**: while paced and using the pace, the rate climbs back towards
   98% of the ceiling (a quarter of the gap per evaluation), holds there for
   ``plateau`` seconds (doubled, up to four times, each time throttling
   comes back at the same ceiling within 15%), then probes past it with
   steps that double from 1% to 10% per evaluation (25% once 1.5 times past
   the ceiling), so a recovered service is found within seconds while a
   steady one sees rare, small overshoots. After
   ``unpace_after`` seconds without throttling while the pace is not
   binding, pacing ends. The limit follows the latency gradient of Netflix's
   Gradient2: ``tolerance * baseline / recent`` clamped to [0.5, 1], where
   the baseline is a slow moving average of recent round trips. At a
   gradient of 1 and a limit in use the limit grows by
   ``max(1, sqrt(limit), limit / 5)``; below 1 it shrinks towards
   ``limit * gradient + sqrt(limit)``. With ``target_latency`` set, round
   trips above it shrink the limit in proportion. A limit that is not in use
   (peak in-flight below 80% of it) never grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..validation import seconds
from .base import Limit
from .cause import AMBIENT, NO_EFFECT, UNKNOWN, WORKS, WORSE, ThrottleCause, Verdict
from .options import AutoTuning
from .signals import LimitDecision, LimitSignal

_BURST_SEEN = (100, 40, 0.4)
"""What shows a burst allowance spent at the first throttling: 100 successes before it, or 40 and 0.4 seconds
(ambient 503s come much sooner: at 5%, 40 answers pass without one 13% of the time)."""

_SETTLE_RTTS = 4.0
"""Round trips a new state runs before its first throttling share is measured (see ``_share_settled``)."""


@dataclass(frozen=True)
class _Undo:
    """What a cut changed, to restore when it turns out to have no effect."""

    limit: float
    rate: float | None
    ceiling: float | None
    hold: float
    plateau_left: float
    probe_step: float
    calm: float


class AdaptiveLimit(Limit):
    """The algorithm behind ``concurrency="auto"``; see the module docstring."""

    def __init__(
        self,
        settings: AutoTuning | None = None,
        *,
        tolerance: float = 1.5,
        backoff: float = 0.8,
        pace_margin: float = 0.9,
        settle_time: float | None = None,
        baseline_window: int = 20,
        unpace_after: float = 30.0,
        min_rate: float = 1.0,
        plateau: float = 2.0,
        burst: float = 1.0,
    ) -> None:
        self.settings = settings or AutoTuning()
        self._tolerance = tolerance
        self._backoff = backoff
        self._pace_margin = pace_margin
        self._settle_time = settle_time
        self._baseline_weight = 2.0 / (baseline_window + 1)
        self._unpace_after = unpace_after
        self._min_rate = min_rate
        self._plateau = plateau
        self._hold = plateau
        self._plateau_left = plateau
        self._limit = float(self.settings.start)
        self._baseline: float | None = None
        self._rate: float | None = None
        self._ceiling: float | None = None
        self._probe_step = 0.01
        self._last_cut = -math.inf
        self._calm = 0.0
        self._trial_ceiling: float | None = None
        self._cold_cut = False
        self._reported_rate: float | None = None
        self._started_at: float | None = None
        self._successes = 0
        self._throttle_free: tuple[int, float] | None = None
        """Successes and seconds before the first throttling (None before it)."""
        self._burst: float = seconds("burst", burst, open_low=False) or 0.0
        self.cause: ThrottleCause[_Undo] = ThrottleCause()
        """Whether throttling is the pool's doing: the record of cuts tested, kept and undone."""

    @property
    def limit(self) -> int:
        return max(self.settings.min_concurrency, min(self.settings.max_concurrency, int(self._limit)))

    @property
    def rate(self) -> float | None:
        return self._reported_rate

    @property
    def ceiling(self) -> float | None:
        """The highest rate (attempts per second) the service accepted without throttling, if known."""
        return self._ceiling

    def adopt(self, rate: float | None, ceiling: float | None, at: float, limit: int | None = None) -> None:
        """Take on a learned state decided elsewhere (a fleet's): pace at ``rate`` (None: unpaced) under
        ``ceiling``, and start from ``limit`` if given. ``at`` is the signal clock's time now: a lower rate
        counts as a cut made then, so throttling still in flight from before it cuts no further."""
        if rate is not None and (self._rate is None or rate < self._rate):
            self._last_cut = at
            self._calm = 0.0
            self._probe_step = 0.01
        self._rate = None if rate is None else max(self._min_rate, rate)
        self._reported_rate = self._rate
        self._ceiling = ceiling if rate is not None else None
        if limit is not None:
            self._limit = float(max(self.settings.min_concurrency, min(self.settings.max_concurrency, limit)))

    @property
    def plateau(self) -> float:
        """Seconds the pace holds just below the ceiling after the last throttling, before probing."""
        return self._hold

    @property
    def baseline_rtt(self) -> float | None:
        """The long-term round-trip baseline in seconds (None before the first sample)."""
        return self._baseline

    @property
    def state(self) -> str:
        """``"testing"`` (a cut on trial), ``"ambient"`` (throttling judged not the pool's doing; no cut is
        kept for it), ``"paced"`` (a cut that worked is kept) or ``"unpaced"``."""
        if self.cause.testing:
            return "testing"
        if self.cause.state == AMBIENT:
            return "ambient"
        return "paced" if self._rate is not None else "unpaced"

    def update(self, signal: LimitSignal) -> LimitDecision | None:
        old_limit, old_rate = self.limit, self._reported_rate
        if self._started_at is None:
            self._started_at = signal.at - signal.interval
        self._successes += signal.successes
        if signal.throttles and self._throttle_free is None:  # the first throttling: what came before it
            self._throttle_free = (self._successes, signal.at - self._started_at)
        cause = self.cause
        if self._rate is not None and self._rate <= (self._ceiling or self._rate) * 0.98 + 1e-9:
            cause.calibrate(signal.at)  # at a kept cut, not probing past it: what throttling was left is ambient
        cause.observe(signal.at, signal.successes + signal.throttles, signal.throttles)
        reason = self._on_verdict(signal, cause.judge(signal.at)) or self._react(signal)
        self._limit = max(float(self.settings.min_concurrency), min(float(self.settings.max_concurrency), self._limit))
        rate = self._rate
        if rate is None or old_rate is None or abs(rate - old_rate) >= 0.01 * old_rate:
            self._reported_rate = rate
        if self.limit == old_limit and self._reported_rate == old_rate:
            return None
        return LimitDecision(self.limit, self._reported_rate, reason)

    def _on_verdict(self, signal: LimitSignal, verdict: Verdict[_Undo] | None) -> str | None:
        """Act on the verdict on the cut on trial: undo it, or cut deeper; the reason, or None (nothing to do)."""
        if verdict is None or verdict.outcome == WORKS:
            return None
        if verdict.outcome == NO_EFFECT:
            self._restore(verdict.undo)
            return "ambient"
        if verdict.outcome == WORSE:  # if the deeper cut has no effect, undo that one only
            self.cause.rebase(self._snapshot())
        self._cut(signal, measured=True)
        return "throttling"

    def _react(self, signal: LimitSignal) -> str:
        """React to the strongest signal: throttling above the ambient level, timeouts, memory, or calm."""
        cause = self.cause
        target_memory = self.settings.target_memory_percent
        if signal.throttles and cause.testing:
            return "throttling"  # the cut on trial is judged first
        if signal.throttles and cause.excess(signal.at) and self._share_settled(signal):
            undo = self._snapshot()
            if self._on_throttling(signal):
                rtt = signal.rtt_mean if signal.rtt_mean is not None else (self._baseline or 0.0)
                cause.start(signal.at, max(0.05, 2 * rtt), signal.offered, undo, signal.goodput, self._cold_cut)
            return "throttling"
        if signal.timeouts:
            self._limit = max(self.settings.min_concurrency, self._limit * self._backoff)
            return "timeouts"
        if target_memory is not None and (signal.memory_fraction or 0.0) > target_memory:
            self._limit = max(self.settings.min_concurrency, self._limit * 0.9)
            return "memory"
        return self._on_calm(signal)

    def _snapshot(self) -> _Undo:
        return _Undo(
            self._limit, self._rate, self._ceiling, self._hold, self._plateau_left, self._probe_step, self._calm
        )

    def _restore(self, undo: _Undo) -> None:
        """Undo a cut that had no effect: back to the limit and pace from before it (never below them now)."""
        self._limit = max(self._limit, undo.limit)
        self._rate = None if undo.rate is None or self._rate is None else max(self._rate, undo.rate)
        self._ceiling = undo.ceiling
        self._hold, self._plateau_left = undo.hold, undo.plateau_left
        self._probe_step, self._calm = undo.probe_step, undo.calm

    def _on_throttling(self, signal: LimitSignal) -> bool:
        """Cut on throttling, unless it answers attempts sent before the last cut; True if it cut."""
        self._cold_cut = False
        self._calm = 0.0
        self._probe_step = 0.01
        settle = self._settle_time if self._settle_time is not None else 2 * self.settings.adjustment_interval
        if signal.at - self._last_cut < settle:
            return False  # answers to attempts sent before the last cut
        self._cut(signal)
        return True

    def _cut(self, signal: LimitSignal, measured: bool = False) -> None:
        """Pace at what the service accepts (throttling at the ambient level does not count against it).

        ``measured``: the goodput since the last cut is what the service accepts, however short the span.
        A first cut (no throttling judged yet, unpaced) uses :meth:`_cold_estimate` instead.
        """
        self._calm = 0.0
        self._probe_step = 0.01
        before = self._rate
        if not measured and self._rate is None and self.cause.state == UNKNOWN and self._burst_spent():
            accepted = self._cold_estimate(signal)
            self._cold_cut = True
            self._rate = max(self._min_rate, accepted * self._pace_margin)
        elif measured or signal.goodput_span >= 0.5 or signal.offered <= 0:
            accepted = signal.goodput / (1.0 - min(self.cause.ambient, 0.5))
            if signal.offered > 0:
                accepted = min(accepted, max(signal.goodput, signal.offered))
            known = self._ceiling
            if not measured and known is not None and self._rate is not None and known < self._rate < 2 * known:
                # throttling while probing a little past the known ceiling: the last second's goodput counts the
                # service's burst allowance (refilled while below it), so it is no measure; the ceiling is
                accepted = min(accepted, known)
            self._rate = max(self._min_rate, accepted * self._pace_margin)
        else:  # too little to measure what the service accepts; halve what was offered, and learn
            rtt = signal.rtt_mean or self._baseline
            accepted = signal.offered
            if rtt and signal.peak_inflight:  # a rate over the first few ms says little; in flight / rtt says more
                accepted = max(accepted, signal.peak_inflight / rtt)
            self._rate = max(self._min_rate, accepted * 0.5)
        if measured and before is not None:
            self._rate = min(self._rate, before)  # a deeper cut: never a higher pace than the one on trial
        ceiling = max(accepted, self._rate)
        reference = self._trial_ceiling if measured else self._ceiling  # a deeper cut: the one from before
        if not measured:
            self._trial_ceiling = self._ceiling
        if reference is not None and abs(ceiling / reference - 1) < 0.15:
            self._hold = min(self._hold * 2, 4 * self._plateau)  # the same ceiling again: probe less often
        else:
            self._hold = self._plateau
        self._plateau_left = self._hold
        self._ceiling = ceiling
        self._last_cut = signal.at
        if signal.peak_inflight and self._limit > signal.peak_inflight + 1:
            # a limit above what ran is no limit at all; but a short interval's peak can be far below what runs
            self._limit = max(float(signal.peak_inflight + 1), self._limit / 2)
        rtt = signal.rtt_mean or self._baseline
        if rtt and self._rate is not None:  # room for the pace at twice the round trip: the pace limits the rate
            self._limit = max(self._limit, min(float(self.settings.max_concurrency), 2 * self._rate * rtt))

    def _share_settled(self, signal: LimitSignal) -> bool:
        """True when the throttling share so far can be taken as the share of what is sent.

        A 503 comes back at once, a success only after its round trip, so over a state's first round trips the
        answers that ended are mostly 503s whatever the share: a cut made on them, and judged against them, looks
        like it works. Before the first verdict the pool waits for ``_SETTLE_RTTS`` round trips (the bias is
        then at most a third), unless a burst allowance was spent (those 503s are the pool's own).
        """
        if self.cause.state != UNKNOWN or self._started_at is None or self._burst_spent():
            return True
        rtt = signal.rtt_mean if signal.rtt_mean is not None else (self._baseline or 0.0)
        return signal.at - self._started_at >= _SETTLE_RTTS * rtt

    def _burst_spent(self) -> bool:
        """True when the first throttling came after a throttle-free stretch long enough to be a burst
        allowance spent (see ``_BURST_SEEN``)."""
        if self._throttle_free is None or self._burst <= 0:  # burst=0: no allowance assumed
            return False
        many, some, after = _BURST_SEEN
        successes, elapsed = self._throttle_free
        return successes >= many or (successes >= some and elapsed >= after)

    def _cold_estimate(self, signal: LimitSignal) -> float:
        """What the service accepts, at the first throttling of a new state: see "Cold start" in docs/adaptive.md.

        The first throttling comes when the service's burst allowance is spent: what it accepted until then is
        that allowance plus its rate over the time. With the burst taken as ``burst`` seconds' worth of the
        rate (one second: the common token-bucket convention, and ChaosProxy's), the rate is the successes
        since the state began over ``elapsed + burst``; never more than the goodput, nor less than the
        successes of the last second over ``1 + burst`` seconds (what a burst of that size allows in them).
        Only used when :meth:`_burst_spent`: ambient 503s show much sooner.
        """
        elapsed = max(signal.at - (self._started_at if self._started_at is not None else signal.at), 0.0)
        estimate = self._successes / (elapsed + self._burst)
        floor = signal.goodput * min(signal.goodput_span, 1.0) / (1.0 + self._burst)
        return max(floor, min(signal.goodput, estimate))

    def _on_calm(self, signal: LimitSignal) -> str:
        reason = "latency"
        if self._rate is not None:
            self._calm += signal.interval
            binding = max(signal.goodput, signal.offered) >= 0.8 * self._rate
            if binding:
                reason = "probe"
                ceiling = self._ceiling or self._rate
                ambient = self.cause.state == AMBIENT  # the last cut had no effect: this pace is no known limit
                # each throttling answer may evaluate (ambient ones too), so evaluations can come many times per
                # interval: past a known ceiling the climb is per interval of time, not per evaluation (a pace
                # whose cut had no effect is no known limit: it climbs at every evaluation)
                part = 1.0 if ambient else min(1.0, signal.interval / self.settings.adjustment_interval)
                if self._rate < ceiling * 0.98:
                    self._rate = min(ceiling * 0.98, self._rate + (ceiling - self._rate) * 0.25 * part)
                elif self._plateau_left > 0 and not ambient:
                    self._plateau_left -= signal.interval
                else:
                    self._rate *= (1.0 + self._probe_step) ** part
                    far = ambient or self._rate >= 1.5 * ceiling  # far past the ceiling: the service grew
                    self._probe_step = min(0.25 if far else 0.1, self._probe_step * 2**part)
            elif self._calm >= self._unpace_after:
                self._rate = self._ceiling = None
                return "unpaced"
        rtt = signal.rtt_mean
        if rtt is None or rtt <= 0:
            return reason
        baseline = rtt if self._baseline is None else self._baseline + (rtt - self._baseline) * self._baseline_weight
        if baseline > 2 * rtt:  # the service got faster: let the baseline follow
            baseline = max(rtt, baseline * 0.9)
        self._baseline = baseline
        gradient = max(0.5, min(1.0, self._tolerance * baseline / rtt))
        target = self.settings.target_latency
        if target is not None and rtt > target:
            gradient = min(gradient, max(0.5, target / rtt))
        limit = self._limit
        in_use = signal.peak_inflight >= 0.8 * int(limit)
        if gradient >= 1.0:
            if in_use:
                self._limit = limit + max(1.0, math.sqrt(limit), limit / 5)
                return "growth" if reason == "latency" else reason
            return reason
        wanted = limit * gradient + math.sqrt(limit)
        if wanted < limit:
            self._limit = (limit + wanted) / 2
        elif in_use:
            self._limit = wanted
        return reason

    def __repr__(self) -> str:
        return f"<AdaptiveLimit limit={self.limit} rate={self._reported_rate}>"
