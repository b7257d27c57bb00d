"""What a fleet of pools shares per partition: the backend contract (see :mod:`.backend`)."""

from .backend import FleetBackend, FleetPartition, SharedLimit, TokenGrant

__all__ = ["FleetBackend", "FleetPartition", "SharedLimit", "TokenGrant"]
