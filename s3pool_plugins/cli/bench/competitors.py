"""The bench's competitors: how each one makes its S3 clients and makes one call.

Every competitor runs the same closed-loop workload (see :mod:`.runner`)
through a :class:`Clients`: ``call(operation, key, tenant)`` makes one
``PutObject`` or ``GetObject`` and raises when the call failed for good.

- ``boto3``: boto3 as it comes with the standard retry mode (3 attempts)
  and botocore's default of 10 pooled connections.
- ``boto3-adaptive``: the same with the adaptive retry mode (client-side
  rate limiting after throttles).
- ``s3fs``: an ``s3fs.S3FileSystem`` with its defaults (its own retry loop,
  aiobotocore underneath); ``pipe_file`` and ``cat_file``.
- ``pool-fixed``: boto3 with ``install(session, OperationsPool(concurrency=N))``;
  the pool owns retries (its defaults).
- ``pool-auto``: the same with ``concurrency="auto"``.

A competitor that needs a feature this version lacks (``concurrency="auto"``,
``tenants=``) raises :class:`Unavailable` when its clients are made, and
the run is reported as skipped with the reason.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .scenarios import Plan, Settings

AUTO_MAX = 64
"""``max_concurrency`` of the pool on auto."""


class Unavailable(Exception):
    """This competitor cannot run in this version (the message says why)."""


class Clients:
    """The clients of one run; one per tenant (or one for all when there are no tenants)."""

    pool: Any = None

    def call(self, operation: str, bucket: str, key: str, body: bytes, tenant: str | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close the clients and shut the pool down (waiting for its work)."""


@dataclass(frozen=True)
class Variant:
    """One competitor in one run: its name, the label in tables, and the fixed limit if any."""

    competitor: str
    label: str
    limit: int | None = None


@dataclass(frozen=True)
class Competitor:
    """A competitor: its name, a one-line description, and the maker of its clients."""

    name: str
    description: str
    make: Callable[[Any, str, Plan, Settings, Variant], Clients]


def _session(server: Any) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key, region_name=server.region
    )


def _tenant_names(plan: Plan) -> list[str | None]:
    return [name for name, _ in plan.tenants] if plan.tenants else [None]


class _BotoClients(Clients):
    def __init__(self, clients: dict[str | None, Any], pool: Any = None) -> None:
        self.clients = clients
        self.pool = pool

    def call(self, operation: str, bucket: str, key: str, body: bytes, tenant: str | None) -> None:
        client = self.clients[tenant]
        if operation == "PUT":
            client.put_object(Bucket=bucket, Key=key, Body=body)
        else:
            client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _boto3(mode: str) -> Callable[[Any, str, Plan, Settings, Variant], Clients]:
    def make(server: Any, endpoint: str, plan: Plan, settings: Settings, variant: Variant) -> Clients:
        from botocore.config import Config

        config = Config(retries={"mode": mode}, max_pool_connections=10, s3={"addressing_style": "path"})
        return _BotoClients(
            {
                tenant: _session(server).client("s3", endpoint_url=endpoint, config=config)
                for tenant in _tenant_names(plan)
            }
        )

    return make


def _pool(auto: bool) -> Callable[[Any, str, Plan, Settings, Variant], Clients]:
    def make(server: Any, endpoint: str, plan: Plan, settings: Settings, variant: Variant) -> Clients:
        from botocore.config import Config

        from ... import OperationsPool
        from ...adapters.botocore import install
        from ...errors import ConfigurationError

        options: dict[str, Any] = {"seed": plan.seed, "load_entrypoints": False, "name": "s3pool-bench"}
        if auto:
            options["concurrency"] = "auto"
            options["auto_tuning"] = {"min_concurrency": 1, "max_concurrency": AUTO_MAX, "scope": settings.auto_scope}
        else:
            options["concurrency"] = variant.limit
        if plan.tenants:
            options["tenants"] = dict(plan.tenants)
        try:
            pool = OperationsPool(**options)
        except ConfigurationError as error:
            feature = "adaptive concurrency (concurrency='auto')" if auto else "tenants"
            if plan.tenants and getattr(error, "option", None) == "tenants":
                feature = "tenants (OperationsPool(tenants=...))"
            refused = getattr(error, "option", None) or error
            raise Unavailable(
                f"{feature} is not available in this version (OperationsPool refused {refused!r})"
            ) from None
        connections = max(plan.workers, AUTO_MAX if auto else int(variant.limit or 1))
        config = Config(max_pool_connections=connections, s3={"addressing_style": "path"})
        clients: dict[str | None, Any] = {}
        try:
            for tenant in _tenant_names(plan):
                session = _session(server)
                if tenant is None:
                    install(session, pool)
                else:
                    if "tenant" not in inspect.signature(install).parameters:
                        raise Unavailable("install(..., tenant=...) is not available in this version")
                    try:
                        install(session, pool, tenant=tenant)
                    except ConfigurationError as error:
                        refused = getattr(error, "option", None) or error
                        raise Unavailable(
                            f"install(..., tenant=...) is not available in this version (install refused {refused!r})"
                        ) from None
                clients[tenant] = session.client("s3", endpoint_url=endpoint, config=config)
        except BaseException:
            pool.shutdown(wait=False)
            raise
        return _BotoClients(clients, pool)

    return make


class _S3fsClients(Clients):
    def __init__(self, filesystems: dict[str | None, Any]) -> None:
        self.filesystems = filesystems

    def call(self, operation: str, bucket: str, key: str, body: bytes, tenant: str | None) -> None:
        filesystem = self.filesystems[tenant]
        if operation == "PUT":
            filesystem.pipe_file(f"{bucket}/{key}", body)
        else:
            filesystem.cat_file(f"{bucket}/{key}")


def _s3fs(server: Any, endpoint: str, plan: Plan, settings: Settings, variant: Variant) -> Clients:
    import s3fs

    options = server.storage_options(endpoint)
    return _S3fsClients(
        {tenant: s3fs.S3FileSystem(skip_instance_cache=True, **options) for tenant in _tenant_names(plan)}
    )


COMPETITORS: dict[str, Competitor] = {
    c.name: c
    for c in (
        Competitor("boto3", "boto3 defaults: standard retries (3 attempts), 10 connections", _boto3("standard")),
        Competitor("boto3-adaptive", "boto3 with the adaptive retry mode, 10 connections", _boto3("adaptive")),
        Competitor("s3fs", "s3fs defaults (its own retries, aiobotocore)", _s3fs),
        Competitor("pool-fixed", "boto3 under OperationsPool(concurrency=N), the pool's default retries", _pool(False)),
        Competitor("pool-auto", "boto3 under OperationsPool(concurrency='auto')", _pool(True)),
    )
}
"""Every competitor by name, in the order the bench runs them."""


def variants(name: str, plan: Plan, settings: Settings) -> list[Variant]:
    """The runs of competitor ``name`` in ``plan``: ``pool-fixed`` runs once per fixed limit under high latency."""
    if name == "pool-fixed":
        limits = settings.fixed_limits if plan.scenario.high_latency else (settings.limit,)
        return [Variant(name, f"pool fixed {limit}", limit) for limit in limits]
    labels = {"boto3": "boto3 standard", "boto3-adaptive": "boto3 adaptive", "s3fs": "s3fs", "pool-auto": "pool auto"}
    return [Variant(name, labels[name])]
