"""DaemonMetrics: one daemon's Prometheus registry and the metrics every supervit daemon exports.

Each daemon owns a :class:`~prometheus_client.CollectorRegistry` (never the global one), so a
node and a supervisor, or many test daemons, can live in one process without clashing.

Figures that mirror state (registered, clock skew, realm counts, fleet state…) are not updated
on every change: *samplers* registered with :meth:`DaemonMetrics.add_sampler` compute them on the
event loop when ``/metrics`` is scraped (reading loop-owned state there is race-free), and the
exposition is then rendered off the loop from that snapshot and the thread-safe counters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from supervit._version import __version__
from supervit.telemetry._grpc import REFUSAL_REASONS, GrpcClientMetrics, GrpcServerMetrics

__all__ = ["COMMIT_BATCH_BUCKETS", "COMMIT_SECONDS_BUCKETS", "DaemonMetrics", "Sampler"]

log = logging.getLogger(__name__)

Sampler = Callable[[], Awaitable[Iterable[Metric]]]
"""Async callable run on the event loop at each scrape; returns finished metric families."""

COMMIT_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
COMMIT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

# A sampler slower than this is skipped for this scrape (logged), so one stuck read cannot hang
# the scrape beyond Prometheus' own default timeout (10 s).
_SAMPLER_TIMEOUT_SECS = 5.0


class _Snapshot(Collector):
    """Serves the families the samplers produced at the latest refresh (replaced as a whole)."""

    def __init__(self) -> None:
        self.families: Sequence[Metric] = ()

    def collect(self) -> Iterable[Metric]:
        return self.families


class DaemonMetrics:
    """The registry of one daemon (``daemon`` = ``"node"`` or ``"supervisor"``).

    Holds the gRPC server and client metrics, ``supervit_auth_refusals_total``, the database
    commit histograms, ``supervit_build_info`` and the process, platform and GC collectors.
    """

    def __init__(self, daemon: str) -> None:
        self.daemon = daemon
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        Info("supervit_build", "The running supervit version.", registry=registry).info(
            {"version": __version__, "daemon": daemon}
        )
        self.auth_refusals = Counter(
            "supervit_auth_refusals_total",
            "Requests refused: credential timestamp outside the window, bad signature, replayed nonce,"
            " or malformed request (INVALID_ARGUMENT).",
            ["reason"],
            registry=registry,
        )
        self._refusal = {reason: self.auth_refusals.labels(reason).inc for reason in REFUSAL_REASONS}
        self.grpc_server = GrpcServerMetrics(registry, on_refusal=self.count_refusal)
        self.grpc_client = GrpcClientMetrics(registry)
        self.db_commit_seconds = Histogram(
            "supervit_db_commit_seconds",
            "Duration of one database group commit (the COMMIT and its fsync).",
            ["db"],
            buckets=COMMIT_SECONDS_BUCKETS,
            registry=registry,
        )
        self.db_commit_batch_size = Histogram(
            "supervit_db_commit_batch_size",
            "Write operations carried by one database group commit.",
            ["db"],
            buckets=COMMIT_BATCH_BUCKETS,
            registry=registry,
        )
        self._samplers: list[tuple[str, Sampler]] = []
        self._snapshot = _Snapshot()
        registry.register(self._snapshot)

    def count_refusal(self, reason: str) -> None:
        """Add one to ``supervit_auth_refusals_total{reason}``."""
        inc = self._refusal.get(reason)
        if inc is None:
            inc = self._refusal[reason] = self.auth_refusals.labels(reason).inc
        inc()

    def commit_observer(self, db_name: str) -> Callable[[float, int], None]:
        """A ``(seconds, operations)`` callback for one database's commits (thread-safe)."""
        seconds = self.db_commit_seconds.labels(db_name).observe
        batch = self.db_commit_batch_size.labels(db_name).observe

        def observe(duration: float, operations: int) -> None:
            seconds(duration)
            batch(operations)

        return observe

    def add_sampler(self, name: str, sampler: Sampler) -> None:
        """Run ``sampler`` at every scrape; ``name`` identifies it in logs."""
        self._samplers.append((name, sampler))

    async def refresh(self) -> None:
        """Run every sampler on the loop and publish their families together."""
        families: list[Metric] = []
        for name, sampler in self._samplers:
            try:
                families.extend(await asyncio.wait_for(sampler(), _SAMPLER_TIMEOUT_SECS))
            except Exception as exc:
                # A failing source must not hide everything else; its figures are absent this time.
                log.warning("metrics sampler %s failed: %s", name, exc or type(exc).__name__)
        self._snapshot.families = families

    async def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """Refresh, then render (in a worker thread) in the format ``accept`` asks for.

        Returns (body, content type): the Prometheus text format, or OpenMetrics when asked.
        """
        await self.refresh()
        encoder, content_type = choose_encoder(accept or "")
        body: bytes = await asyncio.to_thread(encoder, self.registry)
        return body, content_type
