"""A retry budget whose tokens are a local share of the fleet's.

:class:`FleetRetryBudget` is a :class:`~s3pool_plugins.RetryBudget` with the
same costs and rewards. While the fleet is joined a retry spends tokens the
agent took from the fleet's budget ahead of need (:meth:`take_share`; when
they run out between two rounds, up to a share's worth more, which the agent
takes from the fleet at its next round), and
refunds and rewards pile up locally until the agent gives them back in one
call (:meth:`take_refunds`): no store call per retry. While the fleet is
away it is an ordinary local budget.
"""

from __future__ import annotations

import threading

from ..retry import RetryBudget


class FleetRetryBudget(RetryBudget):
    """A :class:`RetryBudget` spending a local share of the fleet's tokens while joined. Thread-safe."""

    def __init__(self, like: RetryBudget) -> None:
        super().__init__(like.capacity, like.retry_cost, like.timeout_retry_cost, like.success_reward)
        self.joined = False
        self._share = 0
        self._refunds = 0
        self.refused = 0
        """Retries refused while joined for want of a share (the agent's demand signal)."""

    @property
    def share_size(self) -> int:
        """How many fleet tokens the agent keeps here: room for a few retries, a small part of the budget."""
        return min(self.capacity, max(2 * self.timeout_retry_cost, 4 * self.retry_cost, self.capacity // 10))

    @property
    def tokens(self) -> int:
        """Tokens this pool holds now: its share of the fleet's while joined (negative: spent ahead of the
        share, at most a share's worth, until the agent's next round), else its own."""
        return self._share if self.joined else self._tokens

    def try_acquire(self, error: BaseException) -> int | None:
        if not self.joined:
            return super().try_acquire(error)
        cost = self.cost_of(error)
        with self._lock:
            if self._share - cost < -self.share_size:  # a share's worth of debt at most, repaid next round
                self.refused += 1
                return None
            self._share -= cost
        return cost

    def on_success(self, spent: int) -> None:
        if not self.joined:
            super().on_success(spent)
            return
        amount = spent if spent > 0 else self.success_reward
        if amount:
            with self._lock:
                self._refunds = min(self.capacity, self._refunds + amount)

    def wanted(self) -> int:
        """Fleet tokens to take now to fill the share (and repay what was spent ahead of it)."""
        with self._lock:
            return max(0, self.share_size - self._share)

    def take_share(self, count: int) -> None:
        """Add ``count`` tokens taken from the fleet."""
        with self._lock:
            self._share += count

    def take_refunds(self, at_least: int = 1) -> int:
        """The refunds and rewards gathered since the last call (to give back to the fleet), or 0 (keeping
        them) while fewer than ``at_least`` are gathered."""
        with self._lock:
            if self._refunds < at_least:
                return 0
            refunds, self._refunds = self._refunds, 0
            return refunds

    def after_fork(self) -> None:
        """A forked child's copy (with a single thread): a new lock, and none of the parent's fleet tokens or
        refunds (the parent spends and gives back its own); the local budget until the agent fills a share."""
        self._lock = threading.Lock()
        self.joined = False
        self._share = self._refunds = self.refused = 0

    def set_joined(self, joined: bool) -> int:
        """Spend the fleet's share (True) or the local bucket (False). Returns what is owed to the fleet when
        leaving (the unspent share and the refunds), which the caller gives back if it can."""
        with self._lock:
            self.joined = joined
            if joined:
                return 0
            owed, self._share, self._refunds = self._share + self._refunds, 0, 0
            return owed
