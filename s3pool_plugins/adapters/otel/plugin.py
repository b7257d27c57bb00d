"""The OpenTelemetry plugin: one span per pool task, retry events, metric instruments.

It is an ordinary pluggy plugin that uses only the public hooks, and the
reference example of one. The package registers an instance through the
``s3pool`` entry point, so every pool loads it (unless plugin autoloading is
off); it depends on ``opentelemetry-api`` only.

It costs nothing without an OpenTelemetry SDK: when a pool is built while
the API's global tracer and meter providers are still the no-op proxies, the
entry-point instance declines to be registered (``s3pool_wanted``), so no
hook of it is ever called. Configure the SDK before you build pools (the
process-wide default pool is built at the first S3 client), or register the
plugin yourself afterwards with :func:`enable`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ...core.task import Task
from ...hooks import hookimpl
from .attributes import end_attributes, retry_event, start_attributes
from .instruments import PoolInstruments


class OpenTelemetryPlugin:
    """Spans and metrics for pool tasks.

    - ``tracer_provider`` / ``meter_provider``: use these instead of the
      global providers (tests pass the SDK's in-memory ones).
    - ``record_keys``: False keeps object keys (``aws.s3.key``) off spans,
      and records a failed task's exception event with its type only (its
      message and traceback can name the object); the
      ``s3pool_span_attributes`` hook can redact anything else.
    - ``metrics``: False records no metric instruments.

    A span starts when a task is created (in the context that created it,
    whose current span becomes its parent) and ends when the task settles.
    It is the current span while each attempt runs, and for an S3 API call
    during the whole call, so spans opened inside (an API call inside an
    fsspec operation, botocore instrumentation) are its children.
    """

    def __init__(
        self, tracer_provider: Any = None, meter_provider: Any = None, *, record_keys: bool = True, metrics: bool = True
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self.record_keys = record_keys
        self._want_metrics = metrics
        self._tracer: trace.Tracer | None = None
        self._instruments: PoolInstruments | None = None
        self._spans: dict[int, Span] = {}

    # -- activation -------------------------------------------------------

    def s3pool_wanted(self) -> bool:
        """True if there is something to record to: given providers, or an SDK set as the global provider."""
        return self._active()

    def _active(self) -> bool:
        if self._tracer_provider is not None or self._meter_provider is not None:
            return True
        tracing = not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
        if tracing or not self._want_metrics:
            return tracing
        from opentelemetry import metrics as otel_metrics

        meter_provider = otel_metrics.get_meter_provider()
        return type(meter_provider).__name__ not in ("_ProxyMeterProvider", "NoOpMeterProvider")

    def _get_tracer(self) -> trace.Tracer:
        tracer = self._tracer
        if tracer is None:
            from ... import __version__

            tracer = self._tracer = trace.get_tracer(
                "s3pool_plugins", __version__, tracer_provider=self._tracer_provider
            )
        return tracer

    def _get_instruments(self) -> PoolInstruments | None:
        if not self._want_metrics:
            return None
        instruments = self._instruments
        if instruments is None:
            instruments = self._instruments = PoolInstruments(self._meter_provider)
        return instruments

    # -- hooks ------------------------------------------------------------

    @hookimpl
    def s3pool_task_queued(self, pool: Any, task: Task) -> None:
        if not self._active():
            return
        kind = SpanKind.CLIENT if task.metadata.get("service") == "s3" else SpanKind.INTERNAL
        span = self._get_tracer().start_span(task.name, kind=kind, attributes=start_attributes(pool.config.name, task))
        self._spans[task.id] = span
        instruments = self._get_instruments()
        if instruments is not None:
            instruments.watch(pool)

    @hookimpl
    def s3pool_wrap_attempt(self, pool: Any, task: Task) -> AbstractContextManager[Any] | None:
        return self._current(task)

    @hookimpl
    def s3pool_wrap_task(self, pool: Any, task: Task) -> AbstractContextManager[Any] | None:
        return self._current(task)

    def _current(self, task: Task) -> AbstractContextManager[Any] | None:
        """The task's span as the current span; a failed attempt is not the task's outcome, so nothing is recorded."""
        span = self._spans.get(task.id)
        if span is None:
            return None
        return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)

    @hookimpl
    def s3pool_task_retry(self, pool: Any, task: Task, error: BaseException, delay: float, classification: Any) -> None:
        span = self._spans.get(task.id)
        if span is None:
            return
        throttling = bool(getattr(classification, "throttling", False))
        span.add_event("s3pool.retry", retry_event(error, delay, task.attempt, throttling))
        instruments = self._instruments
        if instruments is not None:
            instruments.retried(pool, task, throttling)

    @hookimpl
    def s3pool_task_completed(self, pool: Any, task: Task, result: Any) -> None:
        self._finish(pool, task, result, None)

    @hookimpl
    def s3pool_task_error(self, pool: Any, task: Task, error: BaseException) -> None:
        self._finish(pool, task, None, error)

    def _finish(self, pool: Any, task: Task, result: Any, error: BaseException | None) -> None:
        span = self._spans.pop(task.id, None)
        if span is None:
            return
        try:
            attributes = end_attributes(task, result, error, self.record_keys)
            manager = pool.plugin_manager
            if manager.has_impls("s3pool_span_attributes"):
                manager.notify("s3pool_span_attributes", pool=pool, task=task, attributes=attributes)
            span.set_attributes(attributes)
            if error is not None and task.expected:  # an answer its caller expects (exists() on a missing key)
                span.set_attribute("s3pool.expected", True)
                span.add_event("s3pool.expected", {"exception.type": type(error).__name__})
            elif error is not None:
                if self.record_keys:
                    span.record_exception(error)
                else:  # an error's message or traceback can name the object (s3fs's FileNotFoundError does)
                    span.add_event("exception", {"exception.type": type(error).__name__})
                span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}"))
        finally:
            span.end()
        instruments = self._instruments
        if instruments is not None:
            instruments.settled(pool, task)


plugin = OpenTelemetryPlugin()
"""The instance the ``s3pool`` entry point registers in every pool built while an SDK is configured."""


def enable(pool: Any, instance: OpenTelemetryPlugin | None = None) -> OpenTelemetryPlugin:
    """Register ``instance`` (the global-provider :data:`plugin` by default) with ``pool`` now.

    For pools built before the OpenTelemetry SDK was configured, or with
    plugin autoloading off. Registering twice does nothing.
    """
    chosen = plugin if instance is None else instance
    manager = pool.plugin_manager
    if not manager.is_registered(chosen):
        manager.register(chosen)
    return chosen
