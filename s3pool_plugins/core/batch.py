"""Results of ``add_batch``: every item's outcome, in input order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BatchItemError:
    """Item ``index`` failed with ``error``."""

    index: int
    error: BaseException


@dataclass(frozen=True)
class BatchCallbackError:
    """The ``callback`` (``"on_item_complete"`` or ``"on_item_error"``) raised for item ``index``."""

    index: int
    callback: str
    error: BaseException


@dataclass(frozen=True)
class BatchResult:
    """The outcome of a batch.

    ``results[i]`` is item ``i``'s return value, or None if it failed (then
    an entry with ``index == i`` is in ``errors``). ``callback_errors`` lists
    per-item callbacks that raised; they are also logged.
    """

    batch_id: str
    results: list[Any]
    errors: list[BatchItemError] = field(default_factory=list)
    callback_errors: list[BatchCallbackError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if every item succeeded and every callback returned normally."""
        return not self.errors and not self.callback_errors

    def failed_indexes(self) -> list[int]:
        """Indexes of the items that failed, ascending."""
        return [e.index for e in self.errors]
