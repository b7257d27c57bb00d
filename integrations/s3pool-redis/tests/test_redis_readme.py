"""Every ```python example of the distribution's README runs, top to bottom, against a real Redis server.

The README speaks of ``localhost:6379``; the examples run with that address
replaced by the test server's. The pool example finds the plugin through
its ``s3pool`` entry point, so the distribution must be installed (as the
project's test line does).
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from s3pool_redis.testing import RedisServer

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_readme_has_examples() -> None:
    assert len(FENCE.findall(README.read_text())) >= 4


def test_readme_examples_run(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = [point.value for point in entry_points(group="s3pool") if point.name == "redis"]
    assert installed == ["s3pool_redis.plugin"], (
        "the s3pool-redis distribution is not installed: pip install -e integrations/s3pool-redis"
    )
    monkeypatch.delenv("S3POOL_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    namespace: dict[str, object] = {"__name__": "readme_s3pool_redis"}
    for number, block in enumerate(FENCE.findall(README.read_text()), 1):
        source = block.replace("localhost:6379", f"127.0.0.1:{redis_server.port}")
        exec(compile(source, f"README.md[example {number}]", "exec"), namespace)
