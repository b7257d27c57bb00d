"""What a pool shows of its fleet: :class:`FleetStats`, in ``stats().fleet`` and ``metrics().fleet``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FleetStats:
    """The fleet side of a pool, in ``stats().fleet``.

    - ``description``: the store (no credentials); ``fleet_name``; ``member``:
      this pool's name in the fleet.
    - ``state``: ``"joined"`` (the fleet's budget applies), ``"local"`` (the
      store is away: local control) or ``"closed"``.
    - ``store_calls`` / ``store_failures``: backend calls made, and those that
      failed or outlived their time box; ``fallbacks`` / ``rejoins``: times
      the pool fell back to local control and joined again.
    - ``members``: members of the fleet with work, as last counted (the
      pool's partition); ``slots``: fleet slots this pool holds (summed over
      partitions); ``rate``: the fleet's pacing rate of the pool's own
      partition in attempts per second, or None (unpaced).
    """

    description: str
    fleet_name: str
    member: str
    state: str
    store_calls: int
    store_failures: int
    fallbacks: int
    rejoins: int
    members: int
    slots: int
    rate: float | None
