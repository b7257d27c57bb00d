"""OpenTelemetry: spans and metrics for pool tasks, as a pluggy plugin (depends on opentelemetry-api only)."""

from .plugin import OpenTelemetryPlugin, plugin

__all__ = ["OpenTelemetryPlugin", "plugin"]
