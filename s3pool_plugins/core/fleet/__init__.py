"""What a fleet of pools shares per partition: the backend contract (see :mod:`.backend`), the in-process
backend, and what a pool shows of its fleet."""

from .backend import FleetBackend, FleetPartition, SharedLimit, TokenGrant
from .local import LocalFleet
from .options import redact_url
from .stats import FleetStats

__all__ = ["FleetBackend", "FleetPartition", "FleetStats", "LocalFleet", "SharedLimit", "TokenGrant", "redact_url"]
