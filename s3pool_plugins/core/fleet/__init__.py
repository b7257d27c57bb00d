"""What a fleet of pools shares per partition: the backend contract (see :mod:`.backend`) and the in-process backend."""

from .backend import FleetBackend, FleetPartition, SharedLimit, TokenGrant
from .local import LocalFleet

__all__ = ["FleetBackend", "FleetPartition", "LocalFleet", "SharedLimit", "TokenGrant"]
