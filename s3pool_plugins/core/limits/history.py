"""A record of limit changes, kept in a bounded history."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class LimitChange:
    """One change of an adaptive state.

    ``at`` is the pool clock (monotonic seconds). ``partition`` is None for
    the pool's own limit, else the bucket or prefix the state belongs to.
    ``old``/``new`` are limits; ``old_rate``/``new_rate`` pacing rates in
    attempts per second (None: unpaced). ``reason`` is the algorithm's word
    for why: ``"throttling"``, ``"timeouts"``, ``"memory"``, ``"latency"``,
    ``"growth"``, ``"probe"``, ``"unpaced"``, ``"ambient"`` (a cut undone: it
    did not lower the throttling), or ``"set_concurrency"``.
    """

    at: float
    partition: str | None
    old: int
    new: int
    old_rate: float | None
    new_rate: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The change as a plain dict."""
        return asdict(self)
