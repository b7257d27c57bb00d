"""Pool options from ``S3POOL_*`` environment variables, and the process-wide default pool.

The zero-code routes (botocore's plugin variable, ``s3pool run``) configure
the pool from the environment, and the installation they make (see
:func:`install_options_from_environment`). Each variable is the upper-case
option name with the prefix ``S3POOL_``; values are parsed strictly and a bad
one raises :class:`~s3pool_plugins.ConfigurationError` naming the variable,
wherever the environment is read. An unknown ``S3POOL_*`` variable is an
error too (a typo would otherwise be ignored).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigurationError
from .config import PoolConfig
from .validation import seconds, unknown_option

PREFIX = "S3POOL_"
OTHER_VARIABLES = frozenset({"S3POOL_DISABLE_PLUGIN_AUTOLOAD", "S3POOL_REPORT", "S3POOL_REPORT_REFRESH"})
"""``S3POOL_*`` variables that are not pool options (read elsewhere)."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"none", ""}


def _boolean(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(name, "1/true/yes/on or 0/false/no/off", text)


def _integer(name: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ConfigurationError(name, "an integer", text) from None


def _number(name: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigurationError(name, "a number", text) from None
    if not math.isfinite(value):
        raise ConfigurationError(name, "a finite number", text)
    return value


def _seconds(name: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan  # refused below, with the accepted range in the message
    checked = seconds(name, value)
    assert checked is not None  # None is not accepted
    return checked


def _optional(parse: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    def parse_optional(name: str, text: str) -> Any:
        return None if text.strip().lower() in _NONE else parse(name, text)

    return parse_optional


def _text(name: str, text: str) -> str:
    return text


def _names(name: str, text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _concurrency(name: str, text: str) -> int | str:
    return "auto" if text.strip().lower() == "auto" else _integer(name, text)


_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "enabled": _boolean,
    "concurrency": _concurrency,
    "retries": _integer,
    "retry_delay": _number,
    "max_retry_delay": _number,
    "retryable_errors": _names,
    "retry_budget": _boolean,
    "timeout": _optional(_number),
    "queue_timeout": _optional(_number),
    "priority": _number,
    "aging_rate": _number,
    "max_queue": _optional(_integer),
    "queue_full": _text,
    "monitoring": _text,
    "load_entrypoints": _boolean,
    "name": _text,
    "seed": _optional(_integer),
    "fleet": _optional(_text),
    "fleet_name": _text,
    "fleet_concurrency": _optional(_integer),
}
"""The options settable from the environment, with their parsers."""

AUTO_PREFIX = "auto_"
_AUTO_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "min_concurrency": _integer,
    "max_concurrency": _integer,
    "initial_concurrency": _integer,
    "target_latency": _optional(_number),
    "target_memory_percent": _optional(_number),
    "adjustment_interval": _number,
    "scope": _text,
    "prefix_depth": _integer,
    "max_partitions": _integer,
}
"""``auto_tuning`` fields settable as ``S3POOL_AUTO_<FIELD>`` (with ``S3POOL_CONCURRENCY=auto``): every field."""

_INSTALL_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "body_idle_timeout": _seconds,
}
"""Options of the botocore adapter's ``install`` that the zero-code route takes from the environment (not pool
options: :func:`install_options_from_environment` gives them)."""

HEDGE_PREFIX = "hedge_"
_HEDGE_PARSERS: dict[str, Callable[[str, str], Any]] = {
    "enabled": _boolean,
    "delay": _optional(_number),
    "quantile": _number,
    "min_samples": _integer,
    "budget": _number,
    "burst": _integer,
    "quiet": _number,
}
"""``hedge`` fields: ``S3POOL_HEDGE`` turns hedged reads on or off, ``S3POOL_HEDGE_<FIELD>`` sets a field (and
turns them on unless ``S3POOL_HEDGE`` says off)."""


def known_variables() -> list[str]:
    """Every ``S3POOL_*`` variable that sets a pool option (or an ``install`` option), in the order of the
    documentation."""
    return (
        [variable_for(name) for name in _PARSERS]
        + [variable_for(f"auto_tuning.{name}") for name in _AUTO_PARSERS]
        + [variable_for(f"hedge.{name}") for name in _HEDGE_PARSERS]
        + [variable_for(name) for name in _INSTALL_PARSERS]
    )


def _key(option: str) -> str | None:
    """The option key an ``S3POOL_*`` variable's lower-cased suffix sets, or None if it sets none."""
    if option.startswith(AUTO_PREFIX) and option[len(AUTO_PREFIX) :] in _AUTO_PARSERS:
        return "auto_tuning." + option[len(AUTO_PREFIX) :]
    if option == "hedge":
        return "hedge.enabled"
    if option.startswith(HEDGE_PREFIX) and option[len(HEDGE_PREFIX) :] in _HEDGE_PARSERS.keys() - {"enabled"}:
        return "hedge." + option[len(HEDGE_PREFIX) :]
    return option if option in _PARSERS or option in _INSTALL_PARSERS else None


def options_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The pool options given as ``S3POOL_*`` variables, parsed; raises naming a bad variable.

    An unknown ``S3POOL_*`` variable raises too, suggesting the closest known
    one. Each error's ``key`` is the option the variable sets.
    """
    return _parse(os.environ if environ is None else environ)[0]


def install_options_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The options of the botocore adapter's ``install`` given as ``S3POOL_*`` variables, parsed.

    ``S3POOL_BODY_IDLE_TIMEOUT`` -> ``body_idle_timeout`` (seconds > 0, at
    most 7 days). Only the variables that are set: the others keep
    ``install``'s defaults. A bad value raises
    :class:`~s3pool_plugins.ConfigurationError` naming the variable (so does
    :func:`config_from_environment`, which validates every variable).
    """
    options: dict[str, Any] = {}
    for variable, text in (os.environ if environ is None else environ).items():
        key = _key(variable[len(PREFIX) :].lower()) if variable.startswith(PREFIX) else None
        if key in _INSTALL_PARSERS:
            options[key] = _parsed(_INSTALL_PARSERS[key], variable, text, key)
    return options


def _parsed(parse: Callable[[str, str], Any], variable: str, text: str, key: str) -> Any:
    """``parse(variable, text)``; its error names the variable, shows the text as set and keeps the option ``key``."""
    try:
        return parse(variable, text)
    except ConfigurationError as error:
        raise ConfigurationError(variable, error.accepted, text, key=key) from None


def _parse(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The options the ``S3POOL_*`` variables set, and the variable that set each option key."""
    options: dict[str, Any] = {}
    variables: dict[str, str] = {}
    for variable, text in environ.items():
        if not variable.startswith(PREFIX) or variable in OTHER_VARIABLES:
            continue
        key = _key(variable[len(PREFIX) :].lower())
        if key is None:
            raise unknown_option(variable, known_variables(), text, kind="variables")
        if key in _INSTALL_PARSERS:  # not a pool option: only checked here, so a bad one stops every route
            _parsed(_INSTALL_PARSERS[key], variable, text, key)
            continue
        top, _, field = key.partition(".")
        parsers = _HEDGE_PARSERS if top == "hedge" else _AUTO_PARSERS
        parse = parsers[field] if field else _PARSERS[top]
        value = _parsed(parse, variable, text, key)
        if field:
            options.setdefault(top, {})[field] = value
        else:
            options[top] = value
        variables[key] = variable
    return options, variables


def variable_for(key: str) -> str:
    """The ``S3POOL_*`` variable of an option key.

    ``auto_tuning.scope`` -> ``S3POOL_AUTO_SCOPE``; any other field of an
    option is set through the option's own variable (``monitoring.mode`` ->
    ``S3POOL_MONITORING``).
    """
    top, _, field = key.partition(".")
    if top == "auto_tuning" and field:
        return PREFIX + (AUTO_PREFIX + field).upper()
    if top == "hedge" and field and field != "enabled":
        return PREFIX + (HEDGE_PREFIX + field).upper()
    return PREFIX + top.upper()


def config_from_environment(
    environ: Mapping[str, str] | None = None, *, defaults: Mapping[str, Any] | None = None, **overrides: Any
) -> PoolConfig:
    """A :class:`PoolConfig` from ``S3POOL_*`` variables (``overrides`` win; ``defaults`` lose to the variables).

    A value that parses but is out of range raises the config's own error,
    re-spelled in variables: the variable that was set, and the variables of
    the options its accepted values mention (see
    :meth:`ConfigurationError.renamed`). The error's ``key`` stays the option's.
    """
    given, variables = _parse(os.environ if environ is None else environ)
    options = {**(defaults or {}), **given, **overrides}
    try:
        return PoolConfig(**options)
    except ConfigurationError as error:
        top = error.key.partition(".")[0]
        if top not in given or top in overrides:
            raise
        if error.key == "auto_tuning":  # auto fields without S3POOL_CONCURRENCY=auto
            first = sorted(given["auto_tuning"])[0]
            key = f"auto_tuning.{first}"
            raise ConfigurationError(
                variables[key],
                "set only together with {0}=auto",
                given["auto_tuning"][first],
                key=key,
                mentions=("concurrency",),
                names=(variable_for("concurrency"),),
            ) from None

        def spelled(key: str) -> str:  # the variable as it was set, else the documented one
            return variables.get(key) or variables.get(key.partition(".")[0]) or variable_for(key)

        raise error.renamed(spelled) from None


_default_lock = threading.Lock()
_default_pool: Any = None


def default_pool() -> Any:
    """The process-wide pool, built from the environment on first use.

    Adapters use it when no pool is given. Thread-safe; the same object
    every time until :func:`set_default_pool` replaces it.
    """
    global _default_pool
    with _default_lock:
        if _default_pool is None or _default_pool.stats().closed:
            from .pool import OperationsPool

            _default_pool = OperationsPool(config_from_environment(defaults={"name": "s3pool-default"}))
            from .report import attach_from_environment

            attach_from_environment(_default_pool)  # S3POOL_REPORT set (s3pool run): report at exit
        return _default_pool


def set_default_pool(pool: Any) -> Any:
    """Make ``pool`` the process-wide default (None: build a new one on next use); returns the old one."""
    global _default_pool
    with _default_lock:
        old, _default_pool = _default_pool, pool
    return old


def pool_for(caller: str, pool: Any, options: dict[str, Any]) -> Any:
    """The pool an ``install`` function should use.

    ``pool`` if given (then ``options`` must be empty), else a new pool built
    from ``options`` (any :class:`PoolConfig` option), else
    :func:`default_pool`. ``caller`` names the function in errors.
    """
    from .pool import OperationsPool

    if pool is None:
        return OperationsPool(**options) if options else default_pool()
    if options:
        raise ConfigurationError(
            sorted(options)[0], "no pool options together with a pool (give them to OperationsPool)", options
        )
    if not isinstance(pool, OperationsPool):
        raise TypeError(f"{caller}() needs an OperationsPool as pool, got {type(pool).__name__}")
    return pool
