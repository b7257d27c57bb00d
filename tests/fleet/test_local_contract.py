"""The in-process backend keeps the fleet backend contract (the reference the kit is written against)."""

from __future__ import annotations

import pytest

from s3pool_plugins import LocalFleet
from s3pool_plugins.testing.fleet_contract import BackendFactory, FleetBackendContract


class TestLocalFleet(FleetBackendContract):
    @pytest.fixture
    def make_backend(self) -> BackendFactory:
        shared: dict[str, LocalFleet] = {}

        def make(fleet_name: str) -> LocalFleet:
            return shared.setdefault(fleet_name, LocalFleet(fleet_name))

        return make
