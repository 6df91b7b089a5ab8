"""The node daemon's state as Prometheus figures, computed at scrape time (see docs/observability.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from supervit.auth import SqliteNonceStorage
from supervit.inventory import ServiceCollector
from supervit.metrics import MetricsProvider
from supervit.storage import RealmStore
from supervit.telemetry import GRPC_CODE_NAMES

__all__ = ["NodeSampler"]

log = logging.getLogger(__name__)


def _code_label(name: str) -> str:
    # The client records grpc.StatusCode names (UNAVAILABLE); label them as grpc_code is (Unavailable).
    try:
        return GRPC_CODE_NAMES.get(grpc.StatusCode[name], name)
    except KeyError:
        return name


class NodeSampler:
    """Reads the node's stores, services, metrics provider and reporting client at each scrape.

    ``client`` returns the reporting client, or None (serve-only node, or not started yet); its
    figures are exported when it has a ``state`` shaped like :class:`~supervit.client.ConnectionState`.
    """

    def __init__(
        self,
        *,
        realms: RealmStore,
        nonces: SqliteNonceStorage,
        provider: MetricsProvider,
        services: ServiceCollector,
        client: Callable[[], object | None],
    ) -> None:
        self._realms = realms
        self._nonces = nonces
        self._provider = provider
        self._services = services
        self._client = client

    async def __call__(self) -> list[Metric]:
        families: list[Metric] = []
        remembered = self._nonces.remembered
        if remembered is None:
            remembered = await self._nonces.count()
        families.append(_gauge("supervit_nonces_remembered", "Consumed nonces remembered against replay.", remembered))
        families.append(_gauge("supervit_realms", "Realms stored on this node.", await self._realms.count()))
        families.append(
            _gauge(
                "supervit_max_realm_version",
                "Highest realm version stored (the realm_sync_version the node reports).",
                await self._realms.max_realm_version(),
            )
        )
        try:
            snapshot = await self._provider.snapshot()
        except Exception as exc:
            log.debug("no power reserve level for this scrape: %s", exc)
        else:
            families.append(
                _gauge(
                    "supervit_power_reserve_level",
                    "Power reserve level 0-5 (5 = most headroom) as reported to the supervisor.",
                    snapshot.power_reserve_level,
                )
            )
        up = GaugeMetricFamily(
            "supervit_service_up", "1 when the advertised service is healthy or running, else 0.", labels=["service"]
        )
        for service in self._services.services():
            up.add_metric([service.name], 1.0 if service.state.is_healthy else 0.0)
        families.append(up)
        families.extend(self._client_families())
        return families

    def _client_families(self) -> list[Metric]:
        # Duck-typed: the node never imports the client package (it sits above the node).
        client = self._client()
        state: Any = getattr(client, "state", None) if client is not None else None
        try:
            succeeded = int(state.reports_succeeded)
            failures = dict(state.report_failures)
            last_report_at, interval = state.last_report_at, float(state.current_interval_secs)
            registered, skew = state.registered_at is not None, float(state.clock_skew_secs)
        except (AttributeError, TypeError, ValueError):
            return []  # not a SupervitClient-like state: nothing to report
        success = CounterMetricFamily("supervit_report_success", "Reports the supervisor acknowledged.")
        success.add_metric([], succeeded)
        failure = CounterMetricFamily(
            "supervit_report_failure", "Reports that failed, by gRPC status code.", labels=["code"]
        )
        for name, count in sorted(failures.items()):
            failure.add_metric([_code_label(name)], count)
        return [
            success,
            failure,
            _gauge(
                "supervit_last_report_success_timestamp_seconds",
                "Unix time of the last acknowledged report (0: none yet).",
                last_report_at or 0.0,
            ),
            _gauge(
                "supervit_report_interval_seconds",
                "The reporting interval in force (configured, then steered by the supervisor).",
                interval,
            ),
            _gauge(
                "supervit_registered",
                "1 while the node is registered with its supervisor, else 0.",
                1.0 if registered else 0.0,
            ),
            _gauge(
                "supervit_clock_skew_seconds",
                "Estimated node clock minus supervisor clock (positive: node ahead; 0 below 1 s).",
                skew,
            ),
        ]


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
