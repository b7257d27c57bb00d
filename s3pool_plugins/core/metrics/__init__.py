"""Rolling metrics: quantile sketches, windows, per-task records, monitoring modes."""

from .options import MODES, MonitoringConfig
from .recorder import MetricsRecorder
from .sketch import QuantileSketch
from .snapshot import AttemptRecord, Distribution, PoolMetrics, TaskRecord

__all__ = [
    "MODES",
    "AttemptRecord",
    "Distribution",
    "MetricsRecorder",
    "MonitoringConfig",
    "PoolMetrics",
    "QuantileSketch",
    "TaskRecord",
]
