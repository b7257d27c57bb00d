"""pytest fixtures for a local S3 and a fault-injecting proxy in front of it.

Load them from a conftest (no entry point is registered)::

    pytest_plugins = ["s3pool_plugins.testing.pytest_plugin"]

- ``local_s3`` (session): one :class:`~s3pool_plugins.testing.LocalS3`,
  started once, stopped at the end of the session.
- ``s3_bucket`` (function): the name of a fresh, empty bucket on
  ``local_s3``, deleted with its contents after the test.
- ``chaos_proxy`` (function): a :class:`~s3pool_plugins.testing.ChaosProxy`
  in front of ``local_s3`` with no faults (seed 0), stopped after the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .chaos_proxy import ChaosProxy
from .local_s3 import LocalS3


@pytest.fixture(scope="session")
def local_s3() -> Iterator[LocalS3]:
    """A moto S3 server on a free loopback port, shared by the whole session."""
    with LocalS3() as server:
        yield server


@pytest.fixture
def s3_bucket(local_s3: LocalS3) -> Iterator[str]:
    """A new bucket on ``local_s3`` (deleted, with everything in it, afterwards)."""
    name = local_s3.create_bucket()
    yield name
    try:
        local_s3.delete_bucket(name)
    except Exception:  # the test may have deleted it, or stopped the server
        pass


@pytest.fixture
def chaos_proxy(local_s3: LocalS3) -> Iterator[ChaosProxy]:
    """A fault-free proxy in front of ``local_s3``; configure faults in the test."""
    with ChaosProxy(local_s3.endpoint_url) as proxy:
        yield proxy
