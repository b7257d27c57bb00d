"""Per-task options, kept apart from the callable's own arguments.

``pool.submit(fn, *args, **kwargs)`` passes every keyword to ``fn``, exactly
as ``concurrent.futures.Executor`` does. Options for the pool travel on a
bound view instead: ``pool.options(priority=10, timeout=5).submit(fn, key=1)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError
from .context import validate_priority, validate_tenant
from .retry import MAX_RETRIES
from .validation import count, seconds, unknown_option


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks an option that was not given (``None`` means "no limit" for timeouts)."""


class TaskOptions:
    """Validated per-task options; any option left UNSET uses the pool's."""

    __slots__ = ("priority", "timeout", "queue_timeout", "retries", "metadata", "name", "tenant")

    def __init__(
        self,
        priority: float | None = None,
        timeout: float | None = UNSET,
        queue_timeout: float | None = UNSET,
        retries: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        name: str | None = None,
        tenant: str | None = None,
    ) -> None:
        self.priority = None if priority is None else validate_priority(priority)
        self.timeout = timeout if timeout is UNSET else seconds("timeout", timeout, allow_none=True)
        self.queue_timeout = (
            queue_timeout if queue_timeout is UNSET else seconds("queue_timeout", queue_timeout, allow_none=True)
        )
        self.retries = None if retries is None else count("retries", retries, 0, MAX_RETRIES)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise ConfigurationError("metadata", "a mapping (dict) or None", metadata)
        self.metadata = metadata
        if name is not None and not isinstance(name, str):
            raise ConfigurationError("name", "a str or None", name)
        self.name = name
        self.tenant = None if tenant is None else validate_tenant(tenant)

    def merged(self, other: TaskOptions) -> TaskOptions:
        """These options with every option set in ``other`` taking precedence."""
        merged = TaskOptions()
        for slot in TaskOptions.__slots__:
            value = getattr(other, slot)
            keep = value is UNSET if slot in ("timeout", "queue_timeout") else value is None
            setattr(merged, slot, getattr(self, slot) if keep else value)
        return merged


DEFAULT_OPTIONS = TaskOptions()


def task_options(options: Mapping[str, Any]) -> TaskOptions:
    """Build :class:`TaskOptions` from keywords, naming any unknown option and the accepted ones."""
    unknown = sorted(set(options) - set(TaskOptions.__slots__))
    if unknown:
        raise unknown_option(unknown[0], sorted(TaskOptions.__slots__), options[unknown[0]], kind="task options")
    return TaskOptions(**options)
