"""Hedged reads: one more attempt for a read that is slow to answer (see docs/hedging.md).

- :mod:`.options`: the ``hedge`` option (:class:`HedgeOptions`);
- :mod:`.policy`: the pure part, learned delays and the budget, on any clock;
- :mod:`.hedger`: the pool's part, slots and counts (:class:`Hedging`).
"""

from .hedger import HedgeSlot, Hedging
from .options import HEDGED_OPERATIONS, HedgeOptions
from .policy import HedgeBudget, HedgePolicy, WindowQuantile

__all__ = ["HEDGED_OPERATIONS", "HedgeBudget", "HedgeOptions", "HedgePolicy", "HedgeSlot", "Hedging", "WindowQuantile"]
