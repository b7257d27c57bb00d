"""Is the pool causing its throttling? A cut of the rate or limit is a hypothesis, and gets tested.

S3 answers ``SlowDown`` for two kinds of reasons. Some answers are the
pool's doing: it sends a prefix more than the prefix takes, and sending less
makes them stop. Others are *ambient*: other clients use the same prefix,
or S3 is splitting a partition, and the share of answers that are 503 stays
the same whatever the pool sends. Cutting the rate for ambient throttling
buys nothing and feeds on itself: the successes per second fall with every
cut, and the next cut is measured on them.

:class:`ThrottleCause` tells the two apart by experiment. When the
throttling share rises clearly above the level already known to be ambient,
the algorithm cuts and calls :meth:`ThrottleCause.start`; the cut is on
trial. The share over the trial (answers to attempts sent after the cut) is
compared with the share just before it, with a two-proportion test:

- **works**: the share fell clearly (or by half). The cut is kept. What
  remains is the ambient level if clearly below the one known, and once the
  pool has held the kept pace for a window (:meth:`ThrottleCause.calibrate`).
- **worse**: the share rose clearly (the service's capacity is still
  falling). The algorithm cuts deeper; the trial goes on against the new
  share, and undoes only that deeper cut if it has no effect.
- **deeper**: the cut hardly lowered what the pool sent, or the share
  seems lower but not clearly even after ``max_trial`` seconds, so it
  proved nothing: the algorithm cuts deeper (up to three times), and still
  undoes to the state from before the first cut.
- **no effect**: the pool is not the cause. The cut is undone, the share
  becomes the ambient level, and throttling at that level cuts no more.
  Conditions change, so the hypothesis is tested again: after
  ``retest`` seconds, doubling up to ``max_retest`` each time cutting
  again had no effect.

Every throttling answer is counted once as either *caused* (the share above
the ambient level in a trial whose cut worked) or *ambient* (the rest).
Times are seconds of the pool clock. Not thread-safe: the controller calls
it under its lock, through the algorithm.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")

UNKNOWN = "unknown"
"""No cut was tested yet."""
TESTING = "testing"
"""A cut is on trial."""
CAUSED = "caused"
"""The last tested cut reduced the throttling: the pool's rate causes it."""
AMBIENT = "ambient"
"""The last tested cut changed nothing: the throttling is not the pool's doing."""

MAX_AMBIENT = 0.35
"""A share of throttling above this is never judged ambient: the cut goes deeper (and is kept) instead."""

NEGLIGIBLE = 0.01
"""Shares of throttling this small before and after a cut say nothing about its cause: the cut is kept."""

WORKS = "works"
WORSE = "worse"
DEEPER = "deeper"
NO_EFFECT = "no effect"


@dataclass
class _Trial(Generic[S]):
    """A cut on trial: when, the share it is judged against, the state to undo to, what it saw so far."""

    cut_at: float
    measure_from: float
    before: float
    before_n: int
    offered: float
    """Attempts per second before the cut."""
    undo: S
    goodput: float = 0.0
    """Successes per second before the cut (0: unknown)."""
    attempts: int = 0
    throttles: int = 0
    pending: int = 0
    deeper: int = 0
    rose: bool = False
    cold: bool = False
    """The first cut of a state, after a burst allowance was spent: ambient throttling is unlikely."""
    """The share rose clearly under a cut of this trial ("worse")."""
    """Deeper cuts made within this trial."""
    """Throttling answers not yet counted as caused or ambient (those since the cut, and those that led to it)."""


@dataclass(frozen=True)
class Verdict(Generic[S]):
    """How a trial ended: ``outcome`` (``"works"``, ``"worse"`` or ``"no effect"``), the shares before and
    after the cut, and the state from before the first cut of the trial (to restore on ``"no effect"``)."""

    outcome: str
    before: float
    after: float
    undo: S


class ThrottleCause(Generic[S]):
    """Judges whether throttling is caused by the pool's own rate; see the module docstring.

    ``S`` is whatever the algorithm needs to undo a cut. ``window`` is the
    seconds over which the share before a cut and the current share are
    measured; ``min_samples`` the attempts a trial needs before a verdict
    (or ``max_trial`` seconds, whichever comes first); ``z`` the confidence
    (in standard errors) a change of share must reach to count as a verdict,
    ``excess_z`` the one a share above the ambient level must reach to
    start a trial (higher: it is tested at every throttling answer).
    """

    def __init__(
        self,
        *,
        window: float = 2.0,
        min_trial: float = 0.5,
        max_trial: float = 5.0,
        min_samples: int = 40,
        z: float = 2.0,
        excess_z: float = 3.0,
        retest: float = 10.0,
        max_retest: float = 120.0,
    ) -> None:
        self._window_span = window
        self._min_trial = min_trial
        self._max_trial = max_trial
        self._min_samples = min_samples
        self._z = z
        self._excess_z = excess_z
        self._retest = retest
        self._max_retest = max_retest
        self._retest_every = retest
        self._retest_at = math.inf
        self._window: deque[tuple[float, int, int]] = deque()
        self._trial: _Trial[S] | None = None
        self._verdict_at = -math.inf
        self.state = UNKNOWN
        self.ambient = 0.0
        """The estimated share of attempts throttled whatever the pool's rate (0 before a verdict)."""
        self.caused = 0
        """Throttling answers judged to be caused by the pool's rate."""
        self.ambient_count = 0
        """Throttling answers judged ambient (not changed by cutting). Both counts only grow."""
        self._unjudged = 0
        self.last_verdict: Verdict[S] | None = None
        """The last verdict given, if any."""

    @property
    def testing(self) -> bool:
        """True while a cut is on trial."""
        return self._trial is not None

    def observe(self, at: float, attempts: int, throttles: int) -> None:
        """Count what ended since the last call: ``attempts`` (successes and throttling answers), ``throttles``."""
        self.ambient_count += self._unjudged  # the last ones did not lead to a cut: within the ambient level
        self._unjudged = 0
        if attempts <= 0 and throttles <= 0:
            self._trim(at)
            return
        self._window.append((at, attempts, throttles))
        self._trim(at)
        trial = self._trial
        if trial is not None:
            trial.pending += throttles
            if at >= trial.measure_from:
                trial.attempts += attempts
                trial.throttles += throttles
        else:
            self._unjudged = throttles  # ambient, unless they lead to a cut (start)

    def share(self, at: float, since: float = -math.inf) -> tuple[float, int]:
        """The throttling share over the last ``window`` seconds (answers after ``since`` only), and the
        attempts it is measured on."""
        self._trim(at)
        attempts = sum(n for t, n, _ in self._window if t > since)
        throttles = sum(x for t, _, x in self._window if t > since)
        return (throttles / attempts if attempts else 0.0), attempts

    def excess(self, at: float) -> bool:
        """True when the current share is clearly above the ambient level, or a re-test is due.

        Before any verdict, and when a re-test is due, any throttling is excess once the share is measured on
        ``min_samples / 2`` attempts or three throttling answers (the first throttling is cut, and tested).
        """
        if self._trial is not None:
            return False
        share, attempts = self.share(at, self._verdict_at)  # answers before the verdict came at another pace
        if self.state == UNKNOWN or at >= self._retest_at:  # a share measured on a handful says nothing yet
            return share > 0 and attempts >= self._min_samples // 2
        ambient = self.ambient
        margin = self._excess_z * math.sqrt(max(ambient * (1 - ambient), 1e-4) / max(attempts, 1))
        return share > ambient + max(0.005, margin)

    def rebase(self, undo: S) -> None:
        """A deeper cut on a clear rise of the share: if it has no effect, undo it only (back to ``undo``)."""
        if self._trial is not None:
            self._trial.undo = undo

    def calibrate(self, at: float) -> None:
        """The pool runs at a pace known to hold: the share measured since the last verdict is the ambient level.

        Needs a full window after the verdict and ``min_samples`` attempts in it; else nothing changes.
        """
        if self._trial is not None or self.state != CAUSED or at - self._verdict_at < self._window_span:
            return
        share, attempts = self.share(at)
        if attempts >= self._min_samples:
            self.ambient = share

    def start(
        self, at: float, settle: float, offered: float, undo: S, goodput: float = 0.0, cold: bool = False
    ) -> None:
        """A cut was made at ``at`` when ``offered`` attempts per second ended, ``goodput`` of them successes
        (0: unknown); answers from ``settle`` seconds later on judge it. Restore ``undo`` if it has no effect.

        Throttling in the window that led to the cut is part of the trial's count.
        """
        before, n = self.share(at, self._verdict_at)  # since the last verdict: it may have changed the rate
        self._trial = _Trial(at, at + settle, before, n, offered, undo, goodput, cold=cold, pending=self._unjudged)
        self._unjudged = 0
        self.state = TESTING

    def judge(self, at: float) -> Verdict[S] | None:
        """The verdict on the cut on trial, once there is enough to judge; None before."""
        trial = self._trial
        if trial is None or at < trial.measure_from:
            return None
        elapsed = at - trial.measure_from
        after = trial.throttles / trial.attempts if trial.attempts else 0.0
        offered = trial.attempts / max(elapsed, 0.1)
        due = elapsed >= self._min_trial and (
            trial.attempts >= self._min_samples or at >= trial.cut_at + self._max_trial
        )
        if due:
            outcome = self._compare(trial, after, offered)
            thin = trial.throttles < 3 and trial.before * trial.attempts < 3  # fewer than three answers either way
            if outcome in (WORKS, NO_EFFECT) and (thin or max(trial.before, after) <= NEGLIGIBLE):
                if at < trial.cut_at + self._max_trial:
                    return None  # measure longer: a verdict on one or two answers is chance
                outcome = WORKS  # throttling all but stopped at the cut: keep it (the pace is probed up)
            if outcome == NO_EFFECT and trial.cold and at < trial.cut_at + self._max_trial:
                return None  # the share before a first cut is diluted by the burst before it: measure longer
            if outcome == NO_EFFECT and trial.before - after > self._error(trial, after):
                # it seems to have fallen, not clearly: measure longer, then cut deeper to make it clear
                if at < trial.cut_at + self._max_trial:
                    return None
                if trial.deeper < 3:
                    outcome = DEEPER
        elif (
            elapsed >= self._min_trial / 5
            and trial.attempts >= self._min_samples // 4
            and self._rose(trial, after, self._excess_z)
        ):
            outcome = WORSE  # the share rose clearly: cut deeper at once
        else:
            return None
        verdict = Verdict(outcome, trial.before, after, trial.undo)
        self.last_verdict = verdict
        if outcome in (WORSE, DEEPER):
            if outcome == WORSE:  # the capacity fell: judged again against the new share
                trial.rose = True
                trial.before, trial.before_n = after, trial.attempts
            else:  # against all seen so far: a share that was high by chance would make anything look lower
                n = trial.before_n + trial.attempts
                trial.before = (trial.before * trial.before_n + after * trial.attempts) / max(1, n)
                trial.before_n = n
            trial.offered = offered
            trial.goodput = offered * (1 - after)
            trial.deeper += 1
            trial.cut_at = trial.measure_from = at
            trial.attempts = trial.throttles = 0
            return verdict
        self._trial = None
        self._verdict_at = at
        if outcome == WORKS:  # what is left may still be the pool's doing: only a hold at a steady pace tells
            ambient = self.ambient
            if after < ambient - self._z * math.sqrt(ambient * (1 - ambient) / max(1, trial.attempts)):
                self.ambient = after  # clearly less is left than was thought ambient
            self.state = CAUSED
            expected = min(trial.pending, round(after * trial.attempts))
            self.caused += trial.pending - expected
            self.ambient_count += expected
            self._retest_every = self._retest
            self._retest_at = math.inf
        else:
            self.ambient = (trial.before * trial.before_n + after * trial.attempts) / max(
                1, trial.before_n + trial.attempts
            )
            self.ambient_count += trial.pending
            if self.state == TESTING and math.isfinite(self._retest_at):
                self._retest_every = min(self._max_retest, self._retest_every * 2)  # a re-test that failed again
            self.state = AMBIENT
            self._retest_at = at + self._retest_every
        return verdict

    def _rose(self, trial: _Trial[S], after: float, z: float) -> bool:
        """True when the share since the cut is above the share before it by ``z`` standard errors."""
        return after - trial.before > z * self._error(trial, after) and after > 1.25 * trial.before

    def _error(self, trial: _Trial[S], after: float) -> float:
        """The standard error of the difference of the shares before and after the cut."""
        if not trial.before_n or not trial.attempts:
            return 1.0
        pooled = (trial.before * trial.before_n + after * trial.attempts) / (trial.before_n + trial.attempts)
        return math.sqrt(max(pooled * (1 - pooled), 1e-6) * (1 / trial.before_n + 1 / trial.attempts))

    def _compare(self, trial: _Trial[S], after: float, offered: float) -> str:
        """Which hypothesis the share after the cut fits.

        Ambient throttling keeps its share whatever the pool sends: ``after == before``. Throttling the pool
        causes falls when the pool sends less. ``"worse"`` when the share rose clearly; ``"deeper"`` when the
        cut hardly lowered what was sent or the share rose less clearly (the test says nothing yet: cut
        deeper, up to three times, and judge against all answers seen since the first cut);
        ``"works"`` when the share fell clearly (by ``z`` standard errors and a fifth), or by half; a share
        still above :data:`MAX_AMBIENT` is cut deeper, and kept; else ``"no effect"``.
        """
        before = trial.before
        if not trial.attempts:
            return WORKS  # nothing was sent since the cut, so nothing was throttled: keep it
        if self._rose(trial, after, self._excess_z):
            return WORSE
        if self._rose(trial, after, self._z):  # rose, less clearly: the cut may have been too small
            return DEEPER if trial.deeper < 3 else NO_EFFECT
        if offered >= 0.95 * trial.offered:
            return DEEPER if trial.deeper < 3 else NO_EFFECT
        fell = before - after > self._z * self._error(trial, after) and after < 0.8 * before
        if fell or (after <= 0.5 * before and before * trial.attempts >= 6):  # halved, on more than chance
            return WORKS
        pooled = (before * trial.before_n + after * trial.attempts) / max(1, trial.before_n + trial.attempts)
        if max(before, after, pooled) > MAX_AMBIENT:  # too much to be other clients' doing, and what "no effect"
            return DEEPER if trial.deeper < 3 else WORKS  # would learn as ambient: cut until it shows
        if trial.goodput > 0 and offered * (1 - after) >= 0.95 * trial.goodput:
            # the pool sent less and the service took as much as before: it takes no more, so the throttling
            # that is left is the pool's too (ambient throttling takes its share of whatever is sent)
            return DEEPER if trial.deeper < 3 else WORKS
        if trial.rose:  # the share rose clearly under a cut before: a falling capacity, not ambient throttling
            return DEEPER if trial.deeper < 3 else WORKS
        return NO_EFFECT

    def _trim(self, at: float) -> None:
        window = self._window
        while window and at - window[0][0] > self._window_span:
            window.popleft()
