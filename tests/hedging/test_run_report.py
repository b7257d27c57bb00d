"""``s3pool run``'s report describes the fleet its program's pools join, and nothing else there."""

from __future__ import annotations

from s3pool_plugins.cli.run import fleet_settings


def test_the_fleet_section_of_the_run_report_says_nothing_about_hedging() -> None:
    # Hedging is a pool option, not a fleet's: the fleet section once claimed "off" even with S3POOL_HEDGE on.
    settings = fleet_settings({"S3POOL_FLEET": "redis://user:pw@store:6379/0", "S3POOL_HEDGE": "1"})
    assert settings == {"description": "redis://store:6379/0", "fleet_name": "s3pool", "fleet_concurrency": None}
