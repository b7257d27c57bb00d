"""Pool options: one frozen, validated :class:`PoolConfig`.

Every option is checked when the config is built, and a bad value raises
:class:`~s3pool_plugins.errors.ConfigurationError` naming the option and the
accepted values. Times are seconds (floats).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import ConfigurationError, shown
from .context import validate_priority, validate_tenant
from .fair_queue import MAX_WEIGHT, MIN_WEIGHT, WEIGHT_ACCEPTED
from .fleet.backend import FleetBackend
from .fleet.options import check_fleet_options, redact_url
from .hedging.options import HedgeOptions
from .limits.options import AutoTuning
from .metrics.options import MonitoringConfig
from .queue import validate_aging_rate
from .retry import DEFAULT_RETRYABLE_ERRORS, ErrorMatcher, RetryBudget, RetryPolicy
from .validation import MAX_CONCURRENCY, count, in_range, seconds

QUEUE_FULL_MODES = ("block", "raise")


TENANTS_ACCEPTED = f"a mapping of tenant name (non-empty str) to weight ({WEIGHT_ACCEPTED}), or None"


def _tenant_weights(tenants: object) -> dict[str, float]:
    if tenants is None:
        return {}
    if not isinstance(tenants, Mapping):
        raise ConfigurationError("tenants", TENANTS_ACCEPTED, tenants)
    weights = {}
    for name, weight in tenants.items():
        try:
            validate_tenant(name, "tenants")
        except ConfigurationError:
            raise ConfigurationError("tenants", TENANTS_ACCEPTED, f"a key {shown(name)}") from None
        if not in_range(weight, MIN_WEIGHT, MAX_WEIGHT):
            raise ConfigurationError("tenants", TENANTS_ACCEPTED, f"{{{shown(name)}: {shown(weight)}}}")
        weights[name] = float(weight)
    return weights


def _implements_a_hook(plugin: object) -> bool:
    for name in dir(plugin):
        if name.startswith("s3pool_") and hasattr(getattr(plugin, name, None), "s3pool_impl"):
            return True
    return False


@dataclass(frozen=True)
class PoolConfig:
    """The options of an :class:`~s3pool_plugins.OperationsPool`.

    - ``enabled``: False makes the pool a pass-through (no limit, queue,
      retries, timeouts or hooks), the seed's ``operationsPool: false``.
    - ``concurrency``: the most attempts running at once (int from 1 to
      :data:`~.validation.MAX_CONCURRENCY`), or
      ``"auto"`` for an adaptive limit (see ``auto_tuning``).
    - ``auto_tuning``: with ``concurrency="auto"``, an :class:`AutoTuning` or
      a mapping of its fields (``min_concurrency``, ``max_concurrency``,
      ``target_latency``, ``target_memory_percent``,
      ``adjustment_interval``, ``scope`` ...); None for the defaults.
    - ``retries``: retries after the first attempt (int from 0 to 10,000). When neither
      this nor ``retry_policy`` is given, the botocore adapter uses each
      client's own retry setting (see :attr:`retries_chosen`).
    - ``retry_delay``: backoff base in seconds; retry ``n`` waits a random time
      in ``[0, min(max_retry_delay, retry_delay * 2**n)]``.
    - ``max_retry_delay``: cap of the backoff window, seconds.
    - ``retryable_errors``: error names/codes and exception types that may be
      retried (None: :data:`~s3pool_plugins.DEFAULT_RETRYABLE_ERRORS`).
    - ``retry_policy``: a full :class:`RetryPolicy`, instead of the four
      options above (giving both is an error).
    - ``retry_budget``: True for the default :class:`RetryBudget`, False to
      disable it, or a budget object (it may be shared by several pools).
    - ``timeout``: per-attempt time limit in seconds, or None for no limit.
    - ``queue_timeout``: the longest a task may wait for a slot, or None.
    - ``priority``: the default priority (higher runs first), from -1e15 to 1e15.
    - ``aging_rate``: priority points a waiting task gains per second (0 to 1e6).
    - ``max_queue``: the most tasks waiting for a slot (an int up to
      :data:`~.validation.MAX_COUNT`), or None (unbounded).
    - ``queue_full``: what a new task does when the queue is full:
      ``"block"`` (wait for room) or ``"raise"`` (:class:`QueueFull`).
    - ``monitoring``: ``"off"``, ``"light"`` (default) or ``"full"``, or a
      :class:`MonitoringConfig` (or a mapping of its fields) for the window,
      history and sampling settings; see ``pool.metrics()``.
    - ``tenants``: weights of tenants sharing the pool by weighted fair
      queuing (``{"etl": 1, "web": 3}``: a mapping of tenant name to a
      finite number > 0); tenants not listed weigh 1.0. Work names its
      tenant with the ``tenant`` scope, the ``tenant`` task option or
      ``install(..., tenant=...)``. Priorities then order work within a
      tenant only.
    - ``plugins``: plugin objects to register with this pool's hooks.
    - ``load_entrypoints``: load plugins from the ``s3pool`` entry points.
    - ``name``: a label for logs and threads.
    - ``seed``: seeds the backoff jitter for reproducible runs.
    - ``fleet``: share the pool's budget with other pools and processes: None
      (the default: this pool alone), a :class:`~s3pool_plugins.FleetBackend`
      such as :class:`~s3pool_plugins.LocalFleet`, or a URL a loaded plugin
      provides (``redis://host:6379/0`` with the s3pool-redis distribution).
      See docs/fleet.md. Its credentials never appear in a repr, log or summary.
    - ``fleet_name``: the fleet's name (1 to 64 letters, digits, ``._:-``;
      default ``"s3pool"``): pools with the same store and name share.
    - ``fleet_concurrency``: with ``fleet``, the most attempts in flight per
      partition across the whole fleet (an int >= 1), or None.
    - ``hedge``: hedged reads (off by default): True, a
      :class:`~s3pool_plugins.HedgeOptions` or a mapping of its fields
      (``delay``, ``quantile``, ``budget`` ...) sends one more attempt of an
      idempotent read (GetObject, HeadObject, ListObjectsV2) that has no
      response after a learned or fixed delay, takes whichever answers first
      and cancels the other; at most 5% extra requests by default. See
      docs/hedging.md.
    - ``clock``: monotonic clock in seconds used for aging and task times
      (tests inject a fake one).

    Every option in seconds is at most :data:`~.validation.MAX_SECONDS`
    (7 days), so every wait derived from them is one the platform can wait.
    """

    enabled: bool = True
    concurrency: int | str = 10
    auto_tuning: AutoTuning | Mapping[str, Any] | None = None
    retries: int | None = None
    retry_delay: float | None = None
    max_retry_delay: float | None = None
    retryable_errors: Iterable[ErrorMatcher] | None = None
    retry_policy: RetryPolicy | None = None
    retry_budget: RetryBudget | bool = True
    timeout: float | None = 30.0
    queue_timeout: float | None = None
    priority: float = 0
    aging_rate: float = 1.0
    max_queue: int | None = None
    queue_full: str = "block"
    monitoring: MonitoringConfig | str | Mapping[str, Any] = "light"
    tenants: Mapping[str, float] | None = None
    plugins: Sequence[object] = ()
    load_entrypoints: bool = True
    name: str = "s3pool"
    seed: int | None = None
    fleet: str | FleetBackend | None = field(default=None, repr=False)
    fleet_name: str = "s3pool"
    fleet_concurrency: int | None = None
    hedge: HedgeOptions | bool | Mapping[str, Any] | None = False
    clock: Callable[[], float] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigurationError("enabled", "True or False", self.enabled)
        if self.concurrency == "auto":
            object.__setattr__(self, "auto_tuning", AutoTuning.coerce(self.auto_tuning))
        else:
            if not in_range(self.concurrency, 1, MAX_CONCURRENCY, integer=True):
                accepted = f"an int >= 1 and <= {MAX_CONCURRENCY:,}, or 'auto'"
                raise ConfigurationError("concurrency", accepted, self.concurrency)
            if self.auto_tuning is not None:
                raise ConfigurationError(
                    "auto_tuning", "None unless concurrency='auto' (a fixed limit does not adapt)", self.auto_tuning
                )
        policy_options = {
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "max_retry_delay": self.max_retry_delay,
            "retryable_errors": self.retryable_errors,
        }
        given = {k: v for k, v in policy_options.items() if v is not None}
        object.__setattr__(self, "_retries_chosen", self.retries is not None or self.retry_policy is not None)
        if self.retry_policy is not None:
            if not isinstance(self.retry_policy, RetryPolicy):
                raise ConfigurationError("retry_policy", "a RetryPolicy or None", self.retry_policy)
            if given:
                raise ConfigurationError(
                    "retry_policy",
                    "a RetryPolicy alone (put retries, retry_delay, max_retry_delay, retryable_errors in it)",
                    f"a RetryPolicy together with {', '.join(sorted(given))}",
                )
            policy = self.retry_policy
        else:
            policy = RetryPolicy(
                retries=3 if self.retries is None else self.retries,
                retry_delay=1.0 if self.retry_delay is None else self.retry_delay,
                max_retry_delay=20.0 if self.max_retry_delay is None else self.max_retry_delay,
                retryable_errors=(
                    DEFAULT_RETRYABLE_ERRORS if self.retryable_errors is None else self.retryable_errors  # type: ignore[arg-type]
                ),
            )
        object.__setattr__(self, "retry_policy", policy)
        if not isinstance(self.retry_budget, (bool, RetryBudget)):
            raise ConfigurationError("retry_budget", "True, False or a RetryBudget", self.retry_budget)
        object.__setattr__(self, "timeout", seconds("timeout", self.timeout, allow_none=True))
        object.__setattr__(self, "queue_timeout", seconds("queue_timeout", self.queue_timeout, allow_none=True))
        validate_priority(self.priority, "priority")
        validate_aging_rate(self.aging_rate)
        if self.max_queue is not None:
            count("max_queue", self.max_queue)
        if self.queue_full not in QUEUE_FULL_MODES:
            raise ConfigurationError("queue_full", " or ".join(repr(m) for m in QUEUE_FULL_MODES), self.queue_full)
        object.__setattr__(self, "monitoring", MonitoringConfig.coerce(self.monitoring))
        object.__setattr__(self, "tenants", MappingProxyType(_tenant_weights(self.tenants)))
        if isinstance(self.plugins, (str, bytes)) or not isinstance(self.plugins, Iterable):
            raise ConfigurationError("plugins", "a sequence of plugin objects or modules", self.plugins)
        object.__setattr__(self, "plugins", tuple(self.plugins))
        for plugin in self.plugins:
            if not _implements_a_hook(plugin):
                raise ConfigurationError(
                    "plugins", "objects or modules with at least one s3pool_* hook marked with @hookimpl", plugin
                )
        if not isinstance(self.load_entrypoints, bool):
            raise ConfigurationError("load_entrypoints", "True or False", self.load_entrypoints)
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError("name", "a non-empty str", self.name)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigurationError("seed", "an int or None", self.seed)
        check_fleet_options(self.fleet, self.fleet_name, self.fleet_concurrency)
        object.__setattr__(self, "hedge", HedgeOptions.coerce(self.hedge) or False)
        if self.clock is not None and not callable(self.clock):
            raise ConfigurationError("clock", "a callable returning monotonic seconds, or None", self.clock)

    @property
    def monitoring_config(self) -> MonitoringConfig:
        """The effective monitoring settings."""
        assert isinstance(self.monitoring, MonitoringConfig)
        return self.monitoring

    @property
    def adaptive(self) -> AutoTuning | None:
        """The auto-tuning settings when ``concurrency="auto"``, else None."""
        return self.auto_tuning if isinstance(self.auto_tuning, AutoTuning) else None

    @property
    def initial_concurrency(self) -> int:
        """The limit the pool starts with."""
        adaptive = self.adaptive
        if adaptive is not None:
            return adaptive.start
        assert isinstance(self.concurrency, int)
        return self.concurrency

    @property
    def hedging(self) -> HedgeOptions | None:
        """The hedged-read settings when the ``hedge`` option is on, else None."""
        return self.hedge if isinstance(self.hedge, HedgeOptions) else None

    @property
    def retries_chosen(self) -> bool:
        """True if ``retries`` (``S3POOL_RETRIES`` included) or ``retry_policy`` was given.

        False: the retries are the default, and an adapter may use what the
        wrapped client was configured for instead (the botocore adapter does).
        """
        return bool(self.__dict__.get("_retries_chosen", False))

    @property
    def policy(self) -> RetryPolicy:
        """The effective retry policy."""
        assert self.retry_policy is not None
        return self.retry_policy

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dict (for logs and reports)."""
        return {
            "enabled": self.enabled,
            "concurrency": self.concurrency,
            "auto_tuning": None if self.adaptive is None else self.adaptive.as_dict(),
            "retries": self.policy.retries,
            "retry_delay": self.policy.retry_delay,
            "max_retry_delay": self.policy.max_retry_delay,
            "timeout": self.timeout,
            "queue_timeout": self.queue_timeout,
            "priority": self.priority,
            "aging_rate": self.aging_rate,
            "max_queue": self.max_queue,
            "queue_full": self.queue_full,
            "monitoring": self.monitoring_config.mode,
            "tenants": dict(self.tenants or {}),
            "name": self.name,
            "fleet": self.fleet_description,
            "fleet_name": self.fleet_name,
            "fleet_concurrency": self.fleet_concurrency,
            "hedge": None if self.hedging is None else self.hedging.as_dict(),
        }

    @property
    def fleet_description(self) -> str | None:
        """The ``fleet`` option without credentials (a backend's description, or the URL redacted), or None."""
        if self.fleet is None:
            return None
        if isinstance(self.fleet, FleetBackend):
            return self.fleet.description
        return redact_url(self.fleet)
