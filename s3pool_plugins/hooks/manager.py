"""The plugin manager: loads plugins and calls hooks with per-plugin isolation.

Plugins in the ``s3pool`` entry-point group are imported once per process and
registered into every pool's manager, unless the environment variable
``S3POOL_DISABLE_PLUGIN_AUTOLOAD`` is set to a non-empty value other than
``0``/``false``/``no``/``off``, or the pool is built with ``load_entrypoints=False``.
An entry-point plugin may decline to be registered in a pool through an
``s3pool_wanted()`` method (see :meth:`PoolPluginManager.load_entrypoint_plugins`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import specs
from .specs import PROJECT

log = logging.getLogger("s3pool_plugins.hooks")

ENTRY_POINT_GROUP = PROJECT
DISABLE_AUTOLOAD_ENV = "S3POOL_DISABLE_PLUGIN_AUTOLOAD"

_Impl = tuple[Callable[..., Any], tuple[str, ...], str]

INTERRUPTS = (KeyboardInterrupt, SystemExit)
"""What :meth:`PoolPluginManager.notify_isolated` passes on instead of counting as a plugin's error."""

_entrypoint_lock = threading.Lock()
_entrypoint_plugins: list[tuple[str, object]] | None = None


def autoload_disabled() -> bool:
    """True if ``S3POOL_DISABLE_PLUGIN_AUTOLOAD`` turns entry-point loading off."""
    value = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def entrypoint_plugins() -> list[tuple[str, object]]:
    """``(name, plugin)`` for each ``s3pool`` entry point, imported once per process.

    An entry point that fails to import is logged and skipped, so one broken
    third-party package cannot take the pool down.
    """
    global _entrypoint_plugins
    with _entrypoint_lock:
        if _entrypoint_plugins is None:
            loaded: list[tuple[str, object]] = []
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    loaded.append((ep.name, ep.load()))
                except Exception:
                    log.exception("could not load s3pool plugin entry point %r (%s)", ep.name, ep.value)
            _entrypoint_plugins = loaded
        return list(_entrypoint_plugins)


class PoolPluginManager(pluggy.PluginManager):
    """A pluggy manager for the ``s3pool`` hooks, with isolated, cached dispatch.

    Hooks can still be called the pluggy way (``pm.hook.s3pool_...``); the
    pool itself uses :meth:`notify` and :meth:`first_result`, which call each
    implementation on its own so that one failing plugin never hides the
    others or breaks the pool.
    """

    def __init__(self) -> None:
        super().__init__(PROJECT)
        self.add_hookspecs(specs)
        self._impl_cache: dict[str, tuple[_Impl, ...]] = {}
        self._error_lock = threading.Lock()
        self.hook_errors = 0
        self.implemented: frozenset[str] = frozenset()
        """Names of the hooks at least one registered plugin implements (rebuilt on (un)register)."""

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register ``plugin`` (see ``pluggy.PluginManager.register``)."""
        result = super().register(plugin, name)
        self._plugins_changed()
        for hook_caller in self.get_hookcallers(plugin) or ():
            for impl in hook_caller.get_hookimpls():
                if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                    log.warning(
                        "s3pool plugin %r: wrapper implementation of %s is never called; "
                        "return a context manager from s3pool_wrap_attempt instead",
                        impl.plugin_name,
                        hook_caller.name,
                    )
        return result

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any:
        """Unregister a plugin by object or name."""
        result = super().unregister(plugin, name)
        self._plugins_changed()
        return result

    def _plugins_changed(self) -> None:
        self._impl_cache = {}  # a new dict: a lookup that read the old implementations stores into the old one
        self.implemented = frozenset(
            name
            for name in dir(self.hook)
            if name.startswith("s3pool_")
            and any(not (impl.wrapper or impl.hookwrapper) for impl in getattr(self.hook, name).get_hookimpls())
        )

    def load_entrypoint_plugins(self) -> int:
        """Register the ``s3pool`` entry-point plugins; returns how many.

        A plugin object with an ``s3pool_wanted()`` method is registered only
        if it returns True now (when the pool is built): a plugin with
        nothing to do, such as the OpenTelemetry plugin without an SDK, then
        costs nothing at all. One whose check raises is logged and skipped.
        """
        count = 0
        for name, plugin in entrypoint_plugins():
            if self.is_registered(plugin) or self.get_plugin(name) is not None:
                continue
            wanted = getattr(plugin, "s3pool_wanted", None)
            if wanted is not None:
                try:
                    if not wanted():
                        continue
                except Exception:
                    self.record_error("s3pool_wanted", name)
                    continue
            self.register(plugin, name)
            count += 1
        return count

    def has_impls(self, hook_name: str) -> bool:
        """True if any plugin implements ``hook_name`` (a set lookup)."""
        return hook_name in self.implemented

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of ``hook_name``; errors are logged and counted."""
        for function, argnames, plugin_name in self._impls(hook_name):
            try:
                function(*[kwargs[arg] for arg in argnames])
            except Exception:
                self.record_error(hook_name, plugin_name)

    def notify_isolated(self, hook_name: str, **kwargs: Any) -> BaseException | None:
        """:meth:`notify` that isolates every ``BaseException`` too, for hooks that must not change an outcome.

        An implementation that raises anything is logged and counted in
        ``hook_errors``, and the others still run. ``KeyboardInterrupt`` and
        ``SystemExit`` are not a plugin's bug but a request to stop: the
        first one is returned (not counted), for the caller to raise once it
        has finished what it was doing.
        """
        interrupt: BaseException | None = None
        for function, argnames, plugin_name in self._impls(hook_name):
            try:
                function(*[kwargs[arg] for arg in argnames])
            except INTERRUPTS as error:
                if interrupt is None:
                    interrupt = error
            except BaseException:
                self.record_error(hook_name, plugin_name)
        return interrupt

    def first_result(self, hook_name: str, *, passing: tuple[type[BaseException], ...] = (), **kwargs: Any) -> Any:
        """The first non-None result of ``hook_name``'s implementations, or None.

        An implementation that raises is recorded and skipped, unless its
        error is one of ``passing``: that one reaches the caller (for example
        a :class:`~s3pool_plugins.ConfigurationError` about the caller's input).
        """
        for function, argnames, plugin_name in self._impls(hook_name):
            try:
                result = function(*[kwargs[arg] for arg in argnames])
            except passing:
                raise
            except Exception:
                self.record_error(hook_name, plugin_name)
                continue
            if result is not None:
                return result
        return None

    def collect(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Every non-None result of ``hook_name``, in call order."""
        results = []
        for function, argnames, plugin_name in self._impls(hook_name):
            try:
                result = function(*[kwargs[arg] for arg in argnames])
            except Exception:
                self.record_error(hook_name, plugin_name)
                continue
            if result is not None:
                results.append(result)
        return results

    def record_error(self, where: str, plugin_name: str) -> None:
        """Log the exception being handled and count it in ``hook_errors``."""
        with self._error_lock:
            self.hook_errors += 1
        log.exception("s3pool plugin %r raised in %s; the pool carries on", plugin_name, where)

    def _impls(self, hook_name: str) -> tuple[_Impl, ...]:
        cache = self._impl_cache
        cached = cache.get(hook_name)
        if cached is None:
            caller = getattr(self.hook, hook_name)
            impls: Sequence[pluggy.HookImpl] = caller.get_hookimpls()
            cached = tuple(
                (impl.function, tuple(impl.argnames), impl.plugin_name)
                for impl in reversed(impls)
                if not (impl.wrapper or impl.hookwrapper)
            )
            cache[hook_name] = cached
        return cached


def create_plugin_manager(plugins: Sequence[object] = (), load_entrypoints: bool = True) -> PoolPluginManager:
    """A manager with ``plugins`` registered, plus entry-point plugins unless disabled."""
    manager = PoolPluginManager()
    if load_entrypoints and not autoload_disabled():
        manager.load_entrypoint_plugins()
    for plugin in plugins:
        manager.register(plugin)
    return manager
