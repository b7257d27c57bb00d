"""The pool's fleet options: checked, shown without credentials, and turned into a backend.

- ``fleet``: None (no fleet: today's behaviour), a URL whose scheme a loaded
  plugin provides through the ``s3pool_fleet_backend`` hook (the
  ``s3pool-redis`` distribution provides ``redis://`` and ``rediss://``), or
  a :class:`~.backend.FleetBackend` instance such as :class:`~.local.LocalFleet`.
- ``fleet_name``: the fleet's name (pools with the same store and name share
  their budgets).
- ``fleet_concurrency``: a fleet-wide limit on attempts in flight per
  partition, or None.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from ...errors import ConfigurationError
from ..validation import MAX_CONCURRENCY, in_range
from .backend import FleetBackend

if TYPE_CHECKING:
    from ...hooks.manager import PoolPluginManager

FLEET_ACCEPTED = (
    "None, a FleetBackend (such as LocalFleet), or a URL 'scheme://...' whose scheme a loaded plugin provides "
    "(the s3pool-redis distribution provides redis:// and rediss://)"
)
FLEET_NAME_ACCEPTED = "1 to 64 characters among letters, digits and . _ : -"
_FLEET_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def redact_url(url: str) -> str:
    """``url`` without credentials: no user or password, no query (which may carry a password)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        scheme = url.split("://", 1)[0] if "://" in url else ""
        return f"{scheme}://..." if scheme else "..."


def check_fleet_options(fleet: object, fleet_name: object, fleet_concurrency: object) -> None:
    """Raise :class:`ConfigurationError` naming the first fleet option that is not accepted."""
    url_ok = isinstance(fleet, str) and _SCHEME.match(fleet) is not None
    if fleet is not None and not isinstance(fleet, FleetBackend) and not url_ok:
        got = (
            f"a str of {len(fleet)} characters with no scheme:// (not shown: it may hold a password)"
            if isinstance(fleet, str)
            else fleet
        )
        raise ConfigurationError("fleet", FLEET_ACCEPTED, got)
    if not isinstance(fleet_name, str) or not _FLEET_NAME.fullmatch(fleet_name):
        raise ConfigurationError("fleet_name", FLEET_NAME_ACCEPTED, fleet_name)
    if fleet_concurrency is not None:
        if not in_range(fleet_concurrency, 1, MAX_CONCURRENCY, integer=True):
            raise ConfigurationError(
                "fleet_concurrency", f"an int >= 1 and <= {MAX_CONCURRENCY:,}, or None", fleet_concurrency
            )
        if fleet is None:
            raise ConfigurationError(
                "fleet_concurrency", "None unless fleet is set (a fleet-wide limit needs a fleet)", fleet_concurrency
            )


def fleet_schemes(manager: PoolPluginManager) -> list[str]:
    """The URL schemes the loaded plugins say they provide (their optional ``fleet_schemes`` attribute)."""
    schemes: set[str] = set()
    for plugin in manager.get_plugins():
        declared = getattr(plugin, "fleet_schemes", ())
        if isinstance(declared, (list, tuple, frozenset, set)):
            schemes.update(str(s) for s in declared)
    return sorted(schemes)


def resolve_fleet(fleet: str | FleetBackend, fleet_name: str, manager: PoolPluginManager) -> tuple[FleetBackend, bool]:
    """The backend for the ``fleet`` option, and whether the pool owns it (it built it from a URL).

    A URL goes to the ``s3pool_fleet_backend`` hook of the loaded plugins; a
    :class:`ConfigurationError` a plugin raises for a malformed URL of its
    scheme reaches the caller. No plugin taking the URL is a
    :class:`ConfigurationError` naming ``fleet`` and the schemes that are
    provided.
    """
    if isinstance(fleet, FleetBackend):
        return fleet, False
    made = manager.first_result("s3pool_fleet_backend", passing=(ConfigurationError,), url=fleet, fleet_name=fleet_name)
    if isinstance(made, FleetBackend):
        return made, True
    scheme = fleet.split("://", 1)[0]
    provided = fleet_schemes(manager)
    offered = ", ".join(f"{s}://" for s in provided) if provided else "none"
    raise ConfigurationError(
        "fleet",
        f"a URL of a scheme a loaded plugin provides (provided now: {offered}; the s3pool-redis distribution "
        "provides redis:// and rediss://), a FleetBackend such as LocalFleet, or None",
        f"{redact_url(fleet)} (no loaded plugin provides {scheme}://)",
    )
