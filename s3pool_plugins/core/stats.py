"""The pool's live counters, as one consistent snapshot."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .fleet.stats import FleetStats


@dataclass(frozen=True)
class PoolStats:
    """What ``OperationsPool.stats()`` returns (the seed's ``getQueueStats``).

    - ``queued``: waiting for a slot; ``active``: holding a slot now (thread
      work that timed out stays active until it really returns);
      ``backing_off``: waiting out a retry delay (holding no slot);
      ``pending``: submitted and not settled yet.
    - ``processed`` = ``succeeded`` + ``errors`` + ``expected`` (``errors``
      counts tasks that failed for good, cancelled ones included;
      ``cancelled`` counts those separately; ``expected`` counts calls that
      failed with an error their caller expects as an answer, such as the
      404 of an ``exists()`` probe, see ``expected_errors``). ``retries``: retry attempts scheduled; ``throttled``:
      failed attempts classified as throttling; ``nested``: work that ran
      under a slot its caller already held.
    - ``hook_errors``: plugin and callback exceptions caught and logged.
    - ``throttled_caused`` / ``throttled_ambient`` (``concurrency="auto"``;
      None otherwise): the throttling answers the adaptive limit judged to
      be caused by the pool's own rate (cutting it lowered them) and those
      it judged ambient (cutting changed nothing: other clients, a
      partition being split). See docs/adaptive.md.
    - ``fleet``: with the ``fleet`` option, the fleet's state
      (:class:`~s3pool_plugins.FleetStats`: joined or local fallback, store
      calls and fallbacks); else None.
    - ``leases``: slots kept past the end of their call, now (a streamed
      response body not yet read to its end, closed or collected; they count
      in ``active`` too); ``leases_reclaimed``: those given back because
      nobody touched them for their idle bound.
    - ``hedges``: hedged reads sent (the ``hedge`` option; extra attempts,
      each holding a slot); ``hedges_won``: those that answered before the
      first attempt; ``hedge_time_saved``: seconds by which won hedges
      answered sooner than their first attempts did, where that is known
      (see docs/hedging.md).
    """

    enabled: bool
    limit: int
    queued: int
    active: int
    backing_off: int
    pending: int
    processed: int
    succeeded: int
    errors: int
    cancelled: int
    retries: int
    throttled: int
    nested: int
    hook_errors: int
    peak_active: int
    retry_budget_tokens: int | None
    paused: bool
    stopped: bool
    closed: bool
    expected: int = 0
    throttled_caused: int | None = None
    throttled_ambient: int | None = None
    fleet: FleetStats | None = None
    leases: int = 0
    leases_reclaimed: int = 0
    hedges: int = 0
    hedges_won: int = 0
    hedge_time_saved: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a plain dict."""
        return asdict(self)
