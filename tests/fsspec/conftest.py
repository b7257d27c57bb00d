"""Helpers for the fsspec layer's tests: pooled filesystems over LocalS3 (or a ChaosProxy), task records."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from s3pool_plugins import OperationsPool, hookimpl
from s3pool_plugins.adapters.fsspec import PooledFileSystem, uninstall_fsspec
from s3pool_plugins.testing import LocalS3


class Tasks:
    """A plugin that records every task of a pool: queued (name, priority) and settled (name, attempts, outcome)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.queued: list[tuple[str, float]] = []
        self.settled: list[tuple[str, int, str]] = []

    @hookimpl
    def s3pool_task_queued(self, pool: Any, task: Any) -> None:
        with self.lock:
            self.queued.append((task.name, task.priority))

    @hookimpl
    def s3pool_task_completed(self, pool: Any, task: Any, result: Any) -> None:
        with self.lock:
            self.settled.append((task.name, task.attempt, "ok"))

    @hookimpl
    def s3pool_task_error(self, pool: Any, task: Any, error: BaseException) -> None:
        with self.lock:
            self.settled.append((task.name, task.attempt, type(error).__name__))

    def operations(self) -> list[str]:
        """Names of the settled operation tasks (``fsspec.*``), in order."""
        with self.lock:
            return [name for name, _, _ in self.settled if name.startswith("fsspec.")]

    def requests(self) -> list[str]:
        """Names of the settled request tasks (``S3.*``), in order."""
        with self.lock:
            return [name for name, _, _ in self.settled if name.startswith("S3.")]


@pytest.fixture
def tasks() -> Tasks:
    return Tasks()


@pytest.fixture
def pooled(local_s3: LocalS3) -> Callable[..., PooledFileSystem]:
    """``pooled(pool, endpoint_url=None, **options)``: a PooledFileSystem over a fresh s3fs for LocalS3.

    ``options`` go to PooledFileSystem (``priority``, ``asynchronous``);
    ``s3={...}`` adds s3fs options.
    """

    def make(pool: OperationsPool, endpoint_url: str | None = None, s3: dict[str, Any] | None = None, **options: Any):
        target = local_s3.storage_options(endpoint_url)
        target["skip_instance_cache"] = True  # each test gets its own s3fs and aiohttp session
        target.update(s3 or {})
        return PooledFileSystem(target_protocol="s3", target_options=target, pool=pool, **options)

    return make


@pytest.fixture
def storage_options(local_s3: LocalS3) -> Callable[..., dict[str, Any]]:
    """``storage_options(pool, endpoint_url=None)``: pandas/fsspec options for ``pool::s3://`` URLs."""

    def make(pool: OperationsPool, endpoint_url: str | None = None) -> dict[str, Any]:
        return {"pool": {"pool": pool}, "s3": local_s3.storage_options(endpoint_url)}

    return make


@pytest.fixture(autouse=True)
def _uninstalled() -> Iterator[None]:
    """No test leaves ``install_fsspec`` behind."""
    yield
    uninstall_fsspec()


def assert_settled(pool: OperationsPool) -> None:
    """Nothing runs, waits or backs off in ``pool``: every slot came back."""
    stats = pool.stats()
    assert (stats.active, stats.queued, stats.pending, stats.backing_off) == (0, 0, 0, 0), stats


@pytest.fixture
def boto3_client_for(local_s3: LocalS3) -> Callable[..., Any]:
    """``boto3_client_for(pool, endpoint_url)``: a boto3 S3 client of a fresh session installed with ``pool``."""
    import boto3
    from botocore.config import Config

    from s3pool_plugins import install

    def make(pool: OperationsPool, endpoint_url: str) -> Any:
        session = boto3.session.Session(
            aws_access_key_id=local_s3.access_key,
            aws_secret_access_key=local_s3.secret_key,
            region_name=local_s3.region,
        )
        install(session, pool)
        return session.client("s3", endpoint_url=endpoint_url, config=Config(s3={"addressing_style": "path"}))

    return make
