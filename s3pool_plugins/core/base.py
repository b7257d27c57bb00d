"""The pool's state and the helpers every part of it shares.

:class:`PoolBase` builds the scheduler, queue, workers, timers, retry policy,
budget and plugin manager from a :class:`PoolConfig`, and offers task
creation, counters, stats and hook dispatch to the mixins that implement
the pool's APIs.
"""

from __future__ import annotations

import asyncio
import copy
import random
import threading
import time
import weakref
from collections.abc import Callable
from contextvars import Token
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ConfigurationError, PoolStopped
from ..hooks.manager import PoolPluginManager, create_plugin_manager
from .config import PoolConfig
from .context import (
    SlotHolder,
    _scope_priority,
    _scope_tenant,
    exit_slot,
    held_slot,
    held_slots_var,
    validate_priority,
    validate_tenant,
)
from .deadlines import ThreadDeadlines
from .events import EventBridge
from .fair_queue import DEFAULT_TENANT, FairQueue, TenantStats, validate_weight
from .fleet.agent import FleetAgent
from .fleet.backend import FleetBackend
from .fleet.budget import FleetRetryBudget
from .fleet.options import redact_url, resolve_fleet
from .hedging.hedger import Hedging
from .leases import IdleWatch
from .limits.adaptive import AdaptiveLimit
from .limits.base import Limit
from .limits.controller import LimitController
from .limits.history import LimitChange
from .limits.options import AutoTuning
from .loop_units import LoopUnits
from .metrics.recorder import MetricsRecorder
from .options import DEFAULT_OPTIONS, UNSET, TaskOptions
from .queue import PriorityTaskQueue, TaskQueue
from .retry import RetryBudget, RetryPolicy
from .scheduler import Scheduler, Waiter
from .stats import PoolStats
from .task import Task
from .timers import TimerHandle, TimerService
from .validation import unknown_option
from .workers import WorkerThreads

if TYPE_CHECKING:
    from .thread_tasks import _SyncTask

T = TypeVar("T")

_live_pools: weakref.WeakSet[PoolBase] = weakref.WeakSet()

_SHUT_DOWN = "the pool is shut down; it accepts no more work"


def _add_note(error: BaseException, note: str) -> None:
    add_note = getattr(error, "add_note", None)
    if add_note is not None:
        add_note(note)


def _waiter_tenant(waiter: Waiter) -> str | None:
    return waiter.tenant


def _callable_name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        inner = getattr(fn, "func", None)
        if inner is not None:
            return _callable_name(inner)
        return type(fn).__name__
    return str(name)


class PoolBase:
    """State shared by the pool's parts; see :class:`OperationsPool` for the API."""

    def __init__(self, config: PoolConfig | None = None, **options: Any) -> None:
        if config is not None:
            if options:
                raise ConfigurationError("config", "a PoolConfig or keyword options, not both", sorted(options))
            if not isinstance(config, PoolConfig):
                raise ConfigurationError("config", "a PoolConfig", config)
        else:
            unknown = sorted(set(options) - set(PoolConfig.__dataclass_fields__))
            if unknown:
                raise unknown_option(unknown[0], list(PoolConfig.__dataclass_fields__), options[unknown[0]])
            config = PoolConfig(**options)
        self.config = config
        self._enabled = config.enabled
        self._clock: Callable[[], float] = config.clock or time.monotonic
        self._policy = config.policy
        budget = config.retry_budget
        self._budget: RetryBudget | None = RetryBudget() if budget is True else (budget or None)
        self._rng = random.Random(config.seed)
        self._queue: TaskQueue[Waiter] = PriorityTaskQueue(config.aging_rate, self._clock)
        self._fair: FairQueue[Waiter] | None = None
        """The queue once tenants share the pool; until then the plain queue serves the one default tenant."""
        if config.tenants:
            self._fair = FairQueue(config.aging_rate, self._clock, config.tenants, tenant_of=_waiter_tenant)
            self._queue = self._fair
        self._scheduler = Scheduler(config.initial_concurrency, self._queue, max_queue=config.max_queue)
        self._timers_lock = threading.Lock()
        self._timers: TimerService | None = None
        self._workers = WorkerThreads(config.name)
        self._deadlines = ThreadDeadlines(f"{config.name}-deadlines")
        self.plugin_manager: PoolPluginManager = create_plugin_manager(config.plugins, config.load_entrypoints)
        self._events: EventBridge | None = None
        self._closed = False
        self._stop_announced = False
        self._counts_lock = threading.Lock()
        self._retries = 0
        self._throttled = 0
        self._nested = 0
        self._lease_watch = IdleWatch(self._call_later)
        self._calls_backing_off = 0
        self._backoff_lock = threading.Lock()
        self._sync_backoff: dict[_SyncTask, TimerHandle | None] = {}
        self._async_backoff: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self._loop_units = LoopUnits()
        """The ``pool.run()`` tasks in flight, by event loop (to settle those whose loop gets closed)."""
        monitoring = config.monitoring_config
        self._recorder = None if monitoring.mode == "off" else MetricsRecorder(monitoring, self._clock)
        self._log_attempts = self._recorder is not None and self._recorder.keeps_attempts
        self._default_settings = self._task_settings(DEFAULT_OPTIONS)
        self._default_priority = config.priority
        self._limits: LimitController | None = None
        self._gate_weights: dict[str, float] = dict(config.tenants or {})
        """Tenant weights for partition gates: the configured ones and those set since (never the merely seen)."""
        if config.adaptive is not None:
            self._limits = LimitController(
                config.adaptive,
                self._scheduler,
                self._limit_algorithm,
                self._clock,
                self._call_later,
                self._announce_limit,
                name=config.name,
                aging_rate=config.aging_rate,
                make_queue=self._gate_queue,
            )
        self._hedging: Hedging | None = None
        if config.hedging is not None and config.enabled:
            self._hedging = Hedging(config.hedging, self._scheduler, self._limits)
        self._fleet: FleetAgent | None = None
        if config.fleet is not None and config.enabled:
            self._fleet = self._join_fleet(config)
        elif isinstance(config.fleet, str):
            # A disabled pool joins no fleet, but every hook still gets the pool: keep the URL redacted.
            self.config = _with_fleet(config, redact_url(config.fleet))
        _live_pools.add(self)

    def _join_fleet(self, config: PoolConfig) -> FleetAgent:
        """Start the fleet agent: the pool's scheduler, each partition's gate and the retry budget join the fleet."""
        assert config.fleet is not None
        backend, owned = resolve_fleet(config.fleet, config.fleet_name, self.plugin_manager)
        if owned:
            # The URL may carry a password, and every hook gets the pool: keep the backend, not the URL.
            self.config = _with_fleet(config, backend)
        if self._budget is not None:
            self._budget = FleetRetryBudget(self._budget)
        adaptive = config.adaptive
        agent = FleetAgent(
            backend,
            name=config.name,
            owns_backend=owned,
            controller=self._limits,
            fleet_concurrency=config.fleet_concurrency,
            budget=self._budget if isinstance(self._budget, FleetRetryBudget) else None,
            interval=0.5 if adaptive is None else adaptive.adjustment_interval,
            clock=self._clock,
            slots_on_pool=adaptive is None or adaptive.scope == "pool",
            throttled=self._throttled_count,
        )
        agent.attach("", None, self._scheduler, slots=adaptive is None or adaptive.scope == "pool")
        if self._limits is not None:
            self._limits.on_gate = agent.on_gate
        agent.start()
        return agent

    def _throttled_count(self) -> int:
        """Attempts throttled so far (read without the lock: an int, for the fleet agent's calm check)."""
        return self._throttled

    @property
    def hedging(self) -> Hedging | None:
        """The pool's hedged reads (the ``hedge`` option; see docs/hedging.md), or None when off."""
        return self._hedging

    @property
    def fleet(self) -> FleetBackend | None:
        """The fleet backend this pool shares its budget through (the ``fleet`` option), or None."""
        return None if self._fleet is None else self._fleet.backend

    @property
    def enabled(self) -> bool:
        """False for a pass-through pool (``enabled=False``)."""
        return self._enabled

    @property
    def concurrency(self) -> int:
        """The current concurrency limit."""
        return self._scheduler.limit

    @property
    def retry_policy(self) -> RetryPolicy:
        """The pool's default retry policy."""
        return self._policy

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The shared retry budget, or None when disabled."""
        return self._budget

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._scheduler.paused

    def stats(self) -> PoolStats:
        """A consistent snapshot of the pool's counters (the seed's getQueueStats).

        Async tasks whose event loop was closed under them are settled (as
        cancelled) first, so they never show as pending.
        """
        self._reap_closed_loops()
        snap = self._scheduler.snapshot()
        with self._backoff_lock:
            backing_off = len(self._sync_backoff) + len(self._async_backoff) + self._calls_backing_off
        with self._counts_lock:
            retries, throttled, nested = self._retries, self._throttled, self._nested
        succeeded, failed, cancelled = snap["succeeded"], snap["failed"], snap["cancelled"]
        caused, ambient = (None, None) if self._limits is None else self._limits.throttling()
        leases, reclaimed = self._lease_watch.counts()
        hedges, hedges_won, hedge_time_saved = (0, 0, 0.0) if self._hedging is None else self._hedging.counts()
        return PoolStats(
            enabled=self._enabled,
            limit=snap["limit"],
            queued=snap["queued"],
            active=snap["active"],
            backing_off=backing_off,
            pending=snap["pending"],
            processed=succeeded + failed + snap["expected"],
            succeeded=succeeded,
            errors=failed,
            cancelled=cancelled,
            retries=retries,
            throttled=throttled,
            nested=nested,
            hook_errors=self.plugin_manager.hook_errors,
            peak_active=snap["peak_active"],
            retry_budget_tokens=None if self._budget is None else self._budget.tokens,
            paused=snap["paused"],
            stopped=self._scheduler.stopped,
            closed=self._closed,
            expected=snap["expected"],
            throttled_caused=caused,
            throttled_ambient=ambient,
            fleet=None if self._fleet is None else self._fleet.stats(),
            leases=leases,
            leases_reclaimed=reclaimed,
            hedges=hedges,
            hedges_won=hedges_won,
            hedge_time_saved=hedge_time_saved,
        )

    def _reap_closed_loops(self) -> None:
        """Settle the async tasks whose event loop was closed (see ``AsyncTasksMixin``)."""

    def tenant_stats(self) -> dict[str, TenantStats]:
        """Per tenant: its weight, queued work and work served from the queue (a consistent snapshot).

        Lists the configured tenants and the others seen lately; empty while
        the pool has not shared anything between tenants (no ``tenants``
        option, and no work named a tenant other than ``"default"`` yet).
        """
        fair = self._fair
        if fair is None:
            return {}
        scheduler = self._scheduler
        with scheduler.lock:
            if scheduler._inbox:  # waiters queued without the lock are counted too
                scheduler._drain_inbox_locked()
            return fair.tenant_stats()

    def set_tenant_weight(self, tenant: str, weight: float) -> None:
        """Give ``tenant`` a new weight (a finite number > 0), at once: the share it was already charged
        at the old weight is rescaled to the new one (stride scheduling's rule)."""
        validate_tenant(tenant)
        weight = validate_weight(weight, "weight")
        fair = self._fair_queue()
        with self._scheduler.lock:
            fair.set_weight(tenant, weight)
            self._gate_weights[tenant] = weight
        for gate in [] if self._limits is None else self._limits.gates():
            with gate.lock:
                if isinstance(gate.queue, FairQueue):
                    gate.queue.set_weight(tenant, weight)

    def _gate_queue(self) -> FairQueue[Waiter]:
        """The queue of a partition's gate: fair between tenants, with the pool's weights and aging."""
        with self._scheduler.lock:
            weights = dict(self._gate_weights)
        return FairQueue(self.config.aging_rate, self._clock, weights, tenant_of=_waiter_tenant)

    def _fair_queue(self) -> FairQueue[Waiter]:
        """The fair queue, replacing the plain one the first time (its queued work becomes the default tenant's)."""
        fair = self._fair
        if fair is not None:
            return fair
        scheduler = self._scheduler
        with scheduler.lock:
            fair = self._fair
            if fair is None:
                plain = scheduler.queue
                assert isinstance(plain, PriorityTaskQueue)
                fair = FairQueue.adopting(plain, self.config.tenants, tenant_of=_waiter_tenant)
                scheduler.queue = fair
                self._queue = fair
                self._fair = fair
        return fair

    def __repr__(self) -> str:
        snap = self._scheduler.snapshot()
        return (
            f"<OperationsPool {self.config.name!r} limit={snap['limit']} active={snap['active']} "
            f"queued={snap['queued']}{' paused' if snap['paused'] else ''}{' closed' if self._closed else ''}>"
        )

    @property
    def auto_tuning(self) -> AutoTuning | None:
        """The :class:`AutoTuning` settings of an adaptive pool, else None."""
        return None if self._limits is None else self._limits.settings

    def limit_history(self) -> list[LimitChange]:
        """The adaptive limit's recorded changes, oldest first (bounded; empty for a fixed limit)."""
        return [] if self._limits is None else self._limits.history()

    def partition_limits(self) -> dict[str, tuple[int, float | None]]:
        """Per bucket or prefix (``auto_tuning.scope``): its current limit and pacing rate (attempts/s or None)."""
        return {} if self._limits is None else self._limits.partitions()

    def partition_for(self, bucket: str | None, key: str | None = None) -> str | None:
        """The partition whose adaptive state governs requests to ``bucket``/``key``, or None (the pool's)."""
        return None if self._limits is None else self._limits.settings.partition(bucket, key)

    def _limit_algorithm(self, partition: str | None) -> Limit:
        """A plugin's algorithm (``s3pool_limit_algorithm``), else the default :class:`AdaptiveLimit`."""
        settings = self.config.adaptive
        assert settings is not None
        if self.plugin_manager.has_impls("s3pool_limit_algorithm"):
            chosen = self.plugin_manager.first_result(
                "s3pool_limit_algorithm", pool=self, settings=settings, partition=partition
            )
            if isinstance(chosen, Limit):
                return chosen
            if chosen is not None:
                self.plugin_manager.record_error("s3pool_limit_algorithm", f"returned {chosen!r}, not a Limit")
        return AdaptiveLimit(settings)

    def _call_later(self, delay: float, fn: Callable[[], None]) -> object:
        return self._timer_service().call_later(delay, fn)

    def _announce_limit(self, change: LimitChange) -> None:
        if change.partition is None and change.old != change.new:
            self._notify("s3pool_concurrency_changed", old=change.old, new=change.new, reason=change.reason)
        self._notify("s3pool_limit_changed", change=change)

    def _task_settings(self, options: TaskOptions) -> tuple[RetryPolicy, float | None, float | None]:
        policy = self._policy if options.retries is None else self._policy.replace(retries=options.retries)
        timeout = self.config.timeout if options.timeout is UNSET else options.timeout
        queue_timeout = self.config.queue_timeout if options.queue_timeout is UNSET else options.queue_timeout
        return policy, timeout, queue_timeout

    def _make_task(
        self,
        name: str,
        kind: str,
        explicit: float | None,
        metadata: Any,
        max_attempts: int,
        fallback_priority: float | None = None,
        tenant: str | None = None,
        fallback_tenant: str | None = None,
    ) -> Task:
        """A new task: ``explicit`` priority, else the scope's, else the hook's, else the fallback, else the pool's.

        Its tenant: ``tenant``, else the tenant scope's, else ``fallback_tenant``
        (an installation's), else None (the default tenant). The first task of
        a tenant other than the default turns fair sharing on.
        """
        if explicit is not None:
            priority = explicit
        else:
            scoped = _scope_priority.get()
            if scoped is not None:
                priority = scoped
            else:
                priority = self._default_priority if fallback_priority is None else fallback_priority
        if tenant is None:
            tenant = _scope_tenant.get() or fallback_tenant
        task = Task(name, kind, priority, metadata, max_attempts, self._clock(), tenant)
        if tenant is not None and self._fair is None and tenant != DEFAULT_TENANT:
            self._fair_queue()
        if self._log_attempts:
            task.attempt_log = []
        if explicit is None and "s3pool_task_priority" in self.plugin_manager.implemented:
            chosen = self.plugin_manager.first_result("s3pool_task_priority", pool=self, task=task)
            if chosen is not None:
                try:
                    task.priority = validate_priority(chosen, "s3pool_task_priority result")
                except ConfigurationError:
                    self.plugin_manager.record_error("s3pool_task_priority", "returned an invalid priority")
        return task

    def _join_parent_slot(self) -> SlotHolder | None:
        """The slot this context already runs under (now shared with new work), or None.

        None means the new work is admitted on its own, so the pool must be
        open; nested work may still start while its parent runs after a
        shutdown.
        """
        if held_slots_var.get():  # some pool work runs in this context: is it this pool's?
            parent = held_slot(self)
            if parent is not None and self._scheduler.retain(parent):
                self._count("_nested")
                return parent
        if self._closed:
            raise PoolStopped(_SHUT_DOWN)
        return None

    def _settings_for(self, options: TaskOptions) -> tuple[RetryPolicy, float | None, float | None]:
        if options is DEFAULT_OPTIONS:
            return self._default_settings
        return self._task_settings(options)

    def _leave_attempt(
        self, wrappers: list[Any] | None, error: BaseException | None, slot_token: Token[Any] | None
    ) -> None:
        """Exit the attempt's wrappers, then (always) its held-slot context."""
        try:
            if wrappers:
                self._exit_wrappers(wrappers, error)
        finally:
            if slot_token is not None:
                exit_slot(slot_token)

    def _check_open(self) -> None:
        if self._closed:
            raise PoolStopped(_SHUT_DOWN)

    def _count(self, name: str) -> None:
        with self._counts_lock:
            setattr(self, name, getattr(self, name) + 1)

    def _count_backoff(self, change: int) -> None:
        with self._backoff_lock:
            self._calls_backing_off += change

    def _timer_service(self) -> TimerService:
        timers = self._timers
        if timers is None:
            with self._timers_lock:
                if self._timers is None:
                    self._timers = TimerService(f"{self.config.name}-timers")
                timers = self._timers
        return timers

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        manager = self.plugin_manager
        if manager.has_impls(hook_name):
            manager.notify(hook_name, pool=self, **kwargs)

    def _enter_wrappers(self, task: Task, hook: str = "s3pool_wrap_attempt") -> list[Any]:
        """Collect and enter the context managers of ``hook``; one that fails to enter is logged and skipped."""
        manager = self.plugin_manager
        if not manager.has_impls(hook):
            return []
        entered: list[Any] = []
        for cm in manager.collect(hook, pool=self, task=task):
            try:
                cm.__enter__()
            except Exception:
                manager.record_error(f"{hook}.__enter__", repr(cm))
                continue
            except BaseException as error:  # goes on, but leaves no wrapper entered (no context left set)
                self._exit_wrappers(entered, error)
                raise
            entered.append(cm)
        return entered

    def _exit_wrappers(self, entered: list[Any], error: BaseException | None) -> None:
        exc_info = (None, None, None) if error is None else (type(error), error, error.__traceback__)
        raised: BaseException | None = None
        for cm in reversed(entered):
            try:
                cm.__exit__(*exc_info)
            except Exception:
                self.plugin_manager.record_error("a wrapper's __exit__", repr(cm))
            except BaseException as caught:  # every wrapper is exited before it goes on
                raised = raised or caught
        if raised is not None:
            raise raised

    def on(self, event: str, callback: Callable[..., Any]) -> Callable[[], None]:
        """Call ``callback`` on a seed event such as ``"pool:taskStarted"``.

        The accepted names and callback arguments are in
        :data:`~s3pool_plugins.EVENT_SIGNATURES`. Returns a function that
        unsubscribes. A callback that raises is logged and counted in
        ``stats().hook_errors``; the pool carries on.
        """
        if self._events is None:
            with self._counts_lock:
                if self._events is None:
                    bridge = EventBridge(self, self.plugin_manager)
                    self.plugin_manager.register(bridge, f"s3pool-events-{id(self)}")
                    self._events = bridge
        self._events.add(event, callback)
        bridge = self._events

        def unsubscribe() -> None:
            bridge.remove(event, callback)

        return unsubscribe

    def off(self, event: str, callback: Callable[..., Any]) -> bool:
        """Unsubscribe ``callback`` from ``event``; False if it was not subscribed."""
        return self._events is not None and self._events.remove(event, callback)


def _with_fleet(config: PoolConfig, fleet: str | FleetBackend) -> PoolConfig:
    """A copy of ``config`` whose ``fleet`` is ``fleet`` (not checked again: a backend made from, or a
    redaction of, the URL that was)."""
    changed = copy.copy(config)
    object.__setattr__(changed, "fleet", fleet)
    return changed
