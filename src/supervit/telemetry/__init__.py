"""Observability: Prometheus metrics, HTTP health probes and structured logs of the daemons.

Each daemon owns a :class:`DaemonMetrics` (its own registry) and serves it with
:class:`MetricsServer` on ``[supervisor.metrics] listen`` (node) or ``[metrics] listen``
(supervisor), together with ``/healthz`` and ``/readyz``. Every metric, the probes and the log
format are described in ``docs/observability.md``.
"""

from typing import TYPE_CHECKING

from supervit._lazy import lazy_exports

if TYPE_CHECKING:
    from supervit.telemetry._grpc import (
        GRPC_CODE_NAMES,
        LATENCY_BUCKETS,
        REFUSAL_REASONS,
        GrpcClientMetrics,
        GrpcServerMetrics,
        MethodMetrics,
        refusal_reason,
        refusal_reason_for,
    )
    from supervit.telemetry._http import MetricsServer, ReadinessCheck
    from supervit.telemetry._logs import LOG_FORMATS, JsonFormatter, configure_logging
    from supervit.telemetry._registry import DaemonMetrics, Sampler
else:
    # Imported on first use (supervit/_lazy.py); the block above, for type checkers, names the same.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "supervit.telemetry._grpc": (
                "GRPC_CODE_NAMES",
                "LATENCY_BUCKETS",
                "REFUSAL_REASONS",
                "GrpcClientMetrics",
                "GrpcServerMetrics",
                "MethodMetrics",
                "refusal_reason",
                "refusal_reason_for",
            ),
            "supervit.telemetry._http": (
                "MetricsServer",
                "ReadinessCheck",
            ),
            "supervit.telemetry._logs": (
                "LOG_FORMATS",
                "JsonFormatter",
                "configure_logging",
            ),
            "supervit.telemetry._registry": (
                "DaemonMetrics",
                "Sampler",
            ),
        },
    )

__all__ = [
    "GRPC_CODE_NAMES",
    "LATENCY_BUCKETS",
    "LOG_FORMATS",
    "REFUSAL_REASONS",
    "DaemonMetrics",
    "GrpcClientMetrics",
    "GrpcServerMetrics",
    "JsonFormatter",
    "MethodMetrics",
    "MetricsServer",
    "ReadinessCheck",
    "Sampler",
    "configure_logging",
    "refusal_reason",
    "refusal_reason_for",
]
