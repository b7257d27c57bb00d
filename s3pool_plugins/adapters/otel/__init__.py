"""OpenTelemetry: spans and metrics for pool tasks, as a pluggy plugin (depends on opentelemetry-api only)."""

from .plugin import OpenTelemetryPlugin, enable, plugin

__all__ = ["OpenTelemetryPlugin", "enable", "plugin"]
