"""The hooks layer: specifications and the plugin manager."""

from .manager import DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, PoolPluginManager, create_plugin_manager
from .specs import hookimpl, hookspec

__all__ = [
    "DISABLE_AUTOLOAD_ENV",
    "ENTRY_POINT_GROUP",
    "PoolPluginManager",
    "create_plugin_manager",
    "hookimpl",
    "hookspec",
]
