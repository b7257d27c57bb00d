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
- **Cut.** A member whose local limit cut from its share ``before`` to
  ``after`` proposes the fleet's rate times ``after / before`` (at most down
  to :data:`MAX_CUT` of it): the local limit measured what the service
  accepted from this member, its share of what the fleet sent, so the same
  factor lands the fleet near what the service accepted fleet-wide. The
  ceiling scales the same way.
- **Rise.** Below the ceiling, after a calm spell, the rate rises fast
  (:data:`FAST_RISE`, never past :data:`TOP` of the ceiling); at the
  ceiling it holds for :data:`PLATEAU` adjustment intervals and then probes
  by :data:`PROBE`, a step that doubles with every further plateau without
  throttling (up to :data:`MAX_PROBE`), raising the ceiling to the rate that
  held.
- **Rebuild.** A store restarted empty gets back the last fleet rate and
  ceiling a member knew (not its share).
"""

from __future__ import annotations

from dataclasses import dataclass

SLOW_START = 1.5
"""The factor a fleet's rate rises by per calm spell while it knows no ceiling."""

FAST_RISE = 1.25
"""The most one rise below the ceiling raises the fleet's rate by (a factor)."""

TOP = 0.98
"""The share of the ceiling a fast rise stops at."""

BELOW_THROTTLED = 0.95
"""A ceiling learned from a cut is at most this share of the rate that was throttled: what the service
accepted is measured over a span that may include a burst it granted, so it can read above its rate."""

PROBE = 0.03
"""The relative step of the first probe past the ceiling; it doubles for every further plateau without
throttling, up to :data:`MAX_PROBE` (a ceiling learned too low is left within seconds)."""

MAX_PROBE = 0.06
"""The largest relative step of a probe."""

MAX_CUT = 0.5
"""The lowest factor one accepted cut multiplies the fleet's rate by: one member's noise cannot stall the fleet."""

CALM = 2.0
"""Adjustment intervals without a change and without throttling before a rise below the ceiling."""

PACE_MARGIN = 0.9
"""The share of what the service accepted that a cut paces at (the local limit's own margin): a ceiling is
at least the new rate divided by it."""

PLATEAU = 2.0
"""Adjustment intervals without a change and without throttling before a probe past the ceiling."""


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
        minimum) and at least ``MAX_CUT`` times it; the ceiling is never
        below the new rate, and never above ``BELOW_THROTTLED`` of the rate
        that was throttled unless the new rate is.
        """
        factor = max(MAX_CUT, min(1.0, after / before)) if before > 0 else MAX_CUT
        rate = max(self.min_rate, fleet.rate * factor)
        ceiling = None
        if local_ceiling is not None and before > 0:
            measured = max(rate / PACE_MARGIN, fleet.rate * local_ceiling / before)
            ceiling = max(rate, min(fleet.rate * BELOW_THROTTLED, measured))
        return FleetRate(rate, ceiling)

    def cut_from_share(self, fleet: FleetRate, throttled_share: float) -> FleetRate:
        """The fleet's rate after a member saw ``throttled_share`` (0 to 1) of the attempts it sent at the
        fleet's rate throttled lately: all members send to one limit, so the service accepted about
        ``1 - throttled_share`` of what the fleet sent; the cut paces at :data:`PACE_MARGIN` of that.

        Contract: as :meth:`cut`; the ceiling is what was accepted (under the rate that was throttled).
        """
        accepted = fleet.rate * (1.0 - max(0.0, min(1.0, throttled_share)))
        rate = max(self.min_rate, fleet.rate * MAX_CUT, min(fleet.rate, accepted * PACE_MARGIN))
        return FleetRate(rate, max(rate, min(fleet.rate * BELOW_THROTTLED, accepted)))

    def rise(self, fleet: FleetRate, calm_for: float, unthrottled_for: float | None = None) -> FleetRate | None:
        """The fleet's next rate after ``calm_for`` seconds without a change or throttling, and
        ``unthrottled_for`` seconds without throttling (default ``calm_for``), while the rate binds; None:
        not yet.

        Contract: the result is above ``fleet.rate`` by at most
        ``max(SLOW_START, FAST_RISE, 1 + MAX_PROBE)``; below the ceiling it
        never passes ``TOP`` of it; the ceiling never drops.
        """
        if unthrottled_for is None:
            unthrottled_for = calm_for
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
        plateau = PLATEAU * self.interval
        if calm_for < plateau:
            return None
        doublings = max(0.0, unthrottled_for / plateau - 1.0)
        step = min(MAX_PROBE, PROBE * 2.0 ** min(doublings, 8.0))
        return FleetRate(rate * (1.0 + step), max(ceiling, rate))


__all__ = ["FleetRate", "RatePolicy"]
