"""The supervisor's state as Prometheus figures, computed at scrape time (see docs/observability.md).

Per-node figures stay in ``supervit ctl``: a label per node would make a 100k-node fleet 100k series.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from supervit.supervisor._ingest import ReportIngest
from supervit.supervisor._push import CatalogPusher
from supervit.supervisor._service import SupervisorService
from supervit.supervisor._store import SupervisorStore

__all__ = ["SupervisorSampler"]


class SupervisorSampler:
    """Reads the registry (one store read), the service, the catalog and the pusher at each scrape.

    The report fold lag and the in-memory nonce window exist on the embedded (SQLite) backend only;
    on PostgreSQL reports are in the rows once acknowledged and nonces live in the shared store.
    """

    def __init__(self, service: SupervisorService, store: SupervisorStore, pusher: CatalogPusher) -> None:
        self._service = service
        self._store = store
        self._pusher = pusher

    async def __call__(self) -> list[Metric]:
        service, store, pusher = self._service, self._store, self._pusher
        catalog, ingest = store.catalog, store.ingest
        counts = await store.registry.fleet_counts(catalog.version, catalog.live_version)
        nodes = GaugeMetricFamily("supervit_nodes", "Registered nodes by state.", labels=["state"])
        nodes.add_metric(["online"], counts.online)
        nodes.add_metric(["offline"], counts.offline)
        nodes.add_metric(["stopped"], counts.stopped)
        families: list[Metric] = [
            nodes,
            _gauge(
                "supervit_nodes_realm_behind",
                "Nodes whose realms are not in sync with the catalog (a push is due or failing).",
                counts.behind,
            ),
            _gauge(
                "supervit_directives_pending", "Directives queued and not yet delivered.", counts.directives_pending
            ),
            _gauge("supervit_catalog_version", "The realm catalog's version.", catalog.version),
            _counter("supervit_reports", "Reports acknowledged (durably recorded).", service.reports_accepted),
            _counter("supervit_registrations", "Node registrations accepted.", service.registrations),
            _counter("supervit_catalog_pushes", "Catalog pushes that brought a node up to date.", pusher.pushes_ok),
            _counter("supervit_catalog_push_failures", "Catalog pushes that failed.", pusher.push_failures),
        ]
        if isinstance(ingest, ReportIngest):
            families.append(
                _gauge(
                    "supervit_report_fold_lag_seconds",
                    "Age of the oldest acknowledged report not yet folded into the node registry.",
                    ingest.fold_lag_secs(),
                )
            )
            families.append(
                _gauge(
                    "supervit_nonces_remembered",
                    "Nonces remembered in memory against replay (every supervisor credential).",
                    len(ingest.nonces),
                )
            )
        return families


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
