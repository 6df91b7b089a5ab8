"""Node metrics: real system figures from psutil and the 0-5 power reserve level.

The node server and client take any :class:`MetricsProvider`; production uses
:class:`SystemMetricsCollector`, tests and demos :class:`StaticMetricsProvider`::

    collector = await SystemMetricsCollector.create(data_dir)
    snap = await collector.snapshot()
    snap.metrics              # supervisor.v1 SystemMetrics
    snap.power_reserve_level  # 0-5, 5 = most headroom
    bottleneck(snap.sample)   # e.g. ("cpu", 0.12)

The power reserve formula and its thresholds are documented in :mod:`supervit.metrics._power`.
"""

from __future__ import annotations

from supervit.metrics._power import (
    DEFAULT_THRESHOLDS,
    MAX_POWER_RESERVE_LEVEL,
    PowerThresholds,
    ResourceSample,
    Sigmoid,
    bottleneck,
    power_reserve_level,
    resource_scores,
)
from supervit.metrics._system import (
    MetricsProvider,
    Snapshot,
    StaticMetricsProvider,
    SystemMetricsCollector,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MAX_POWER_RESERVE_LEVEL",
    "MetricsProvider",
    "PowerThresholds",
    "ResourceSample",
    "Sigmoid",
    "Snapshot",
    "StaticMetricsProvider",
    "SystemMetricsCollector",
    "bottleneck",
    "power_reserve_level",
    "resource_scores",
]
