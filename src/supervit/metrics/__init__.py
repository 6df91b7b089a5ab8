"""Node metrics: real system figures from psutil and the 0-5 power reserve level.

The node server and client take any :class:`MetricsProvider`; production uses
:class:`SystemMetricsCollector`, tests and demos :class:`StaticMetricsProvider`::

    collector = await SystemMetricsCollector.create(data_dir)
    snap = await collector.snapshot()
    snap.metrics              # supervisor.v1 SystemMetrics
    snap.power_reserve_level  # 0-5, 5 = most headroom
    snap.pwrzv                # the ratios the level came from (default "pwrzv" model)

Two power reserve models: ``"pwrzv"`` (default), the Rust node's pwrzv crate re-implemented
(:mod:`supervit.metrics._pwrzv`), and ``"supervit"`` (:mod:`supervit.metrics._power`); see
docs/power-reserve.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supervit._lazy import lazy_exports

if TYPE_CHECKING:
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
    from supervit.metrics._pwrzv import (
        POWER_MODELS,
        PWRZV_SIGMOIDS,
        PwrzvMetrics,
        pwrzv_level,
        pwrzv_reserve,
        pwrzv_scores,
    )
    from supervit.metrics._pwrzv_proc import read_pwrzv_metrics
    from supervit.metrics._system import (
        MetricsProvider,
        Snapshot,
        StaticMetricsProvider,
        SystemMetricsCollector,
    )
else:
    # Imported on first use (supervit/_lazy.py); the block above, for type checkers, names the same.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "supervit.metrics._power": (
                "DEFAULT_THRESHOLDS",
                "MAX_POWER_RESERVE_LEVEL",
                "PowerThresholds",
                "ResourceSample",
                "Sigmoid",
                "bottleneck",
                "power_reserve_level",
                "resource_scores",
            ),
            "supervit.metrics._pwrzv": (
                "POWER_MODELS",
                "PWRZV_SIGMOIDS",
                "PwrzvMetrics",
                "pwrzv_level",
                "pwrzv_reserve",
                "pwrzv_scores",
            ),
            "supervit.metrics._pwrzv_proc": ("read_pwrzv_metrics",),
            "supervit.metrics._system": (
                "MetricsProvider",
                "Snapshot",
                "StaticMetricsProvider",
                "SystemMetricsCollector",
            ),
        },
    )

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MAX_POWER_RESERVE_LEVEL",
    "POWER_MODELS",
    "PWRZV_SIGMOIDS",
    "MetricsProvider",
    "PowerThresholds",
    "PwrzvMetrics",
    "ResourceSample",
    "Sigmoid",
    "Snapshot",
    "StaticMetricsProvider",
    "SystemMetricsCollector",
    "bottleneck",
    "power_reserve_level",
    "pwrzv_level",
    "pwrzv_reserve",
    "pwrzv_scores",
    "read_pwrzv_metrics",
    "resource_scores",
]
