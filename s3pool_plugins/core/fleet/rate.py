"""How a fleet's shared rate moves: a pure policy, with no clock, store or lock of its own.

The shared record holds the *fleet's* rate (attempts per second for all of
its members together, enforced by the fleet's token bucket) and ceiling.
Members never convert their own rate into a fleet rate by a member count:
they propose *relative* changes (see docs/fleet.md).

- **Start.** A fleet with no record starts at one member's cold-start rate
  (what that member alone judged, not times the members: conservative), with
  no ceiling, and then *slow-starts*: it multiplies its rate by
  :data:`SLOW_START` after every calm adjustment interval until something
  throttles.
- **Cut.** The first cut of a slow start (no ceiling yet) goes at least two
  slow-start steps back (the last rate that held: a burst the service
  granted hid the step after it). A member whose local limit cut from its share ``before`` to
  ``after`` proposes the fleet's rate times ``after / before`` (at most down
  to :data:`MAX_CUT` of it, or :data:`BLIND_CUT` once a ceiling is known):
  the local limit measured what the service
  accepted from this member, its share of what the fleet sent, so the same
  factor lands the fleet near what the service accepted fleet-wide. The
  ceiling scales the same way. A member's throttled share is a sample of
  its own attempts (a dozen, in a fleet of eight): a cut is judged at the
  share's lower confidence bound
  (:func:`share_lower_bound`), so one unlucky sample cannot take the fleet
  far under the limit, where probes climb back at 3% per hold.
- **Rise.** Below the ceiling, after a calm spell, the rate rises fast
  (:data:`FAST_RISE`, never past :data:`TOP` of the ceiling); at the
  ceiling it probes by :data:`PROBE` after every calm spell of
  :data:`PROBE_HOLD` adjustment intervals, raising the ceiling to the rate
  that held. A probe's step stays small and its hold long because a service
  may grant a burst (S3 does; ChaosProxy grants one second's worth): an
  overshoot drains that burst silently, so throttling shows only
  ``burst / overshoot`` seconds after it began. Probes that compound faster
  than that run far past the limit before the first 503, and the cut that
  follows lands low. With steps of 3% every 2 s, the overshoot hidden after
  k probes is about ``0.03 * 2 * k**2 / 2`` seconds of the rate: a burst of
  one second's worth lasts about six probes (12 s).
- **Rebuild.** A store restarted empty gets back the last fleet rate and
  ceiling a member knew (not its share).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SLOW_START = 1.5
"""The factor a fleet's rate rises by per calm spell while it knows no ceiling."""

FAST_RISE = 1.25
"""The most one rise below the ceiling raises the fleet's rate by (a factor)."""

TOP = 0.95
"""The share of the ceiling a fast rise stops at: a ceiling is one member's measure (a few dozen attempts), off
by several percent either way, and a rise to it must not be an overshoot; probes go on from there."""

BELOW_THROTTLED = 0.95
"""A ceiling learned from a cut is at most this share of the rate that was throttled: what the service
accepted is measured over a span that may include a burst it granted, so it can read above its rate."""

PROBE = 0.03
"""The relative step of a probe past the ceiling."""

PROBE_HOLD = 4.0
"""Adjustment intervals without a change and without throttling before a probe past the ceiling (each
probe holds this long, so an overshoot a service's burst hides stays small; see the module docstring)."""

MAX_CUT = 0.5
"""The lowest factor one accepted cut multiplies the fleet's rate by: one member's noise cannot stall the fleet."""

BLIND_CUT = 0.81
"""The lowest factor a cut by a member's local limit (no sample of the share throttled: see
:meth:`RatePolicy.cut`) multiplies the rate by once a ceiling is known: that limit halves on 503s, a
reaction rather than a measure, and a fleet near its ceiling is over it by a few probes; this is the cut a
throttled share of 10% calls for (``PACE_MARGIN`` of the 90% accepted). Throttling that goes on cuts again
after the settle time."""

MAX_START_CUT = 1 / 3
"""The lowest factor a cut by the throttled share multiplies the rate by while no ceiling is known: the slow
start's rate was never shown to hold, and a burst the service granted hid its overshoot until the rate was
two or three steps past the limit; halving it would leave the fleet over the limit for another settle time."""

CONFIDENCE = 1.645
"""Standard errors below a member's measured throttled share that a cut is judged at
(a one-sided 95% bound): with a sample of a dozen attempts, a share measured at 50% is judged at 29%."""

CALM = 2.0
"""Adjustment intervals without a change and without throttling before a rise below the ceiling."""

PACE_MARGIN = 0.9
"""The share of what the service accepted that a cut paces at (the local limit's own margin): a ceiling is
at least the new rate divided by it."""


@dataclass(frozen=True)
class FleetRate:
    """A fleet's pace: ``rate`` in attempts per second for the whole fleet, and its ``ceiling`` (None: unknown)."""

    rate: float
    ceiling: float | None


class RatePolicy:
    """The fleet's rate logic for adjustment intervals of ``interval`` seconds (see the module docstring).

    Every method is a pure function of its arguments: the agent feeds it
    what it measured and proposes the result by compare-and-set.
    """

    def __init__(self, interval: float, min_rate: float = 1.0) -> None:
        self.interval = interval
        self.min_rate = min_rate

    def start(self, local_rate: float) -> FleetRate:
        """A new fleet's first rate: one member's own rate, no ceiling yet (slow start follows)."""
        return FleetRate(max(self.min_rate, local_rate), None)

    def cut(self, fleet: FleetRate, before: float, after: float, local_ceiling: float | None) -> FleetRate:
        """The fleet's rate after a member's local limit cut its share from ``before`` to ``after``.

        Contract: the result is below ``fleet.rate`` (unless that is at the
        minimum) and at least ``BLIND_CUT`` times it once a ceiling is known
        (during a slow start, at least ``MAX_CUT`` times it, at most
        ``1 / SLOW_START**2`` times it and no less); the ceiling is never
        below the new rate, and never above ``BELOW_THROTTLED`` of the rate
        that was throttled unless the new rate is.
        """
        deepest = MAX_CUT if fleet.ceiling is None else BLIND_CUT
        factor = max(deepest, min(1.0, after / before)) if before > 0 else deepest
        rate = max(self.min_rate, min(fleet.rate * factor, self._held_in_slow_start(fleet)))
        ceiling = None
        if local_ceiling is not None and before > 0:
            measured = max(rate / PACE_MARGIN, fleet.rate * local_ceiling / before)
            ceiling = max(rate, min(fleet.rate * BELOW_THROTTLED, measured))
        return FleetRate(rate, ceiling)

    def cut_from_share(self, fleet: FleetRate, throttled_share: float, sample: int | None = None) -> FleetRate:
        """The fleet's rate after a member saw ``throttled_share`` (0 to 1) of the ``sample`` attempts it
        sent at the fleet's rate throttled lately (None: a share known exactly): all members send to one
        limit, so the service accepted about ``1 - throttled_share`` of what the fleet sent; the cut paces
        at :data:`PACE_MARGIN` of that.

        Contract: as :meth:`cut`, except that while no ceiling is known (slow start) the result may go
        down to ``MAX_START_CUT`` of the rate; the ceiling is what was accepted (under the rate that was
        throttled). With a ``sample``, the share taken is :func:`share_lower_bound` of it (never more
        than the share measured): the smaller the sample, the shallower the cut (during a slow start, still
        at least two steps back).
        """
        share = max(0.0, min(1.0, throttled_share))
        if sample is not None:
            share = share_lower_bound(share, sample)
        accepted = fleet.rate * (1.0 - share)
        bound = MAX_CUT if fleet.ceiling is not None else MAX_START_CUT
        paced = min(fleet.rate, accepted * PACE_MARGIN, self._held_in_slow_start(fleet))
        rate = max(self.min_rate, fleet.rate * bound, paced)
        return FleetRate(rate, max(rate, min(fleet.rate * BELOW_THROTTLED, accepted)))

    @staticmethod
    def _held_in_slow_start(fleet: FleetRate) -> float:
        """The highest rate a cut may keep: during the slow start (no ceiling yet), the rate two steps back,
        the last one that held (a burst the service granted hid the step after it); else no bound."""
        return fleet.rate / SLOW_START**2 if fleet.ceiling is None else fleet.rate

    def rise(self, fleet: FleetRate, calm_for: float) -> FleetRate | None:
        """The fleet's next rate after ``calm_for`` seconds without a change or throttling, while the rate
        binds; None: not yet.

        Contract: the result is above ``fleet.rate`` by at most
        ``max(SLOW_START, FAST_RISE, 1 + PROBE)``; below the ceiling it
        never passes ``TOP`` of it; past it, one step of ``PROBE`` per
        ``PROBE_HOLD`` calm intervals; the ceiling never drops.
        """
        rate, ceiling = fleet.rate, fleet.ceiling
        if ceiling is None:
            if calm_for < self.interval:  # one interval: throttling shows within it
                return None
            return FleetRate(rate * SLOW_START, None)
        top = ceiling * TOP
        if rate < top:
            if calm_for < CALM * self.interval:
                return None
            return FleetRate(min(top, rate * FAST_RISE), ceiling)
        if calm_for < PROBE_HOLD * self.interval:
            return None
        return FleetRate(rate * (1.0 + PROBE), max(ceiling, rate))


def share_lower_bound(share: float, sample: int) -> float:
    """The lower end of a one-sided confidence interval (:data:`CONFIDENCE` standard errors; Wilson's score
    interval) for a share measured as ``share`` over ``sample`` attempts: between 0 and ``share``, and
    ``share`` itself for a sample of 0 or less (nothing to widen)."""
    share = max(0.0, min(1.0, share))
    if sample <= 0:
        return share
    z2 = CONFIDENCE * CONFIDENCE
    spread = CONFIDENCE * math.sqrt(share * (1.0 - share) / sample + z2 / (4.0 * sample * sample))
    return max(0.0, min(share, (share + z2 / (2.0 * sample) - spread) / (1.0 + z2 / sample)))


__all__ = ["FleetRate", "RatePolicy", "share_lower_bound"]
