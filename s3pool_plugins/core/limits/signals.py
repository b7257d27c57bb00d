"""What a limit algorithm sees and decides: one interval's signal, and a new state."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LimitSignal:
    """What happened under one adaptive state since its last evaluation.

    Times are seconds. ``rtt_mean``/``rtt_min`` cover successful attempts only
    (None when there were none). ``throttles`` and ``timeouts`` count attempts
    that failed that way (the loss signal). ``peak_inflight`` is the most
    attempts that ran at once; ``limit`` the limit in force meanwhile.
    ``goodput`` is successful attempts per second over the last second (or
    since the first success, if later: ``goodput_span`` says over how many
    seconds), a steadier figure than ``successes``. ``offered`` is attempts
    that ended (successes and losses) per second over the same time.
    ``memory_fraction`` is the share of the process's available memory in use,
    when the memory guard is on and it could be read.
    """

    at: float
    interval: float
    successes: int
    rtt_mean: float | None
    rtt_min: float | None
    throttles: int
    timeouts: int
    peak_inflight: int
    limit: int
    goodput: float
    goodput_span: float = 1.0
    offered: float = 0.0
    rate: float | None = None
    memory_fraction: float | None = None

    @property
    def drops(self) -> int:
        """Attempts lost to throttling or timeouts."""
        return self.throttles + self.timeouts


@dataclass(frozen=True)
class LimitDecision:
    """A new limit (int >= 1) and pacing rate (attempts per second, None: unpaced), with why."""

    limit: int
    rate: float | None
    reason: str
