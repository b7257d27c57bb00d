"""Limit algorithms and the controller that applies them (``concurrency="auto"``)."""

from .adaptive import AdaptiveLimit
from .base import FixedLimit, Limit
from .history import LimitChange
from .options import AutoTuning
from .signals import LimitDecision, LimitSignal

__all__ = ["AdaptiveLimit", "AutoTuning", "FixedLimit", "Limit", "LimitChange", "LimitDecision", "LimitSignal"]
