"""The supervisor's metrics over real HTTP: fleet state, reports, refusals, pushes, directives, admin calls."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.protocol import supervisor_pb2
from supervit.supervisor import AdminClient
from tests.conftest import OTHER_SECRET_HEX, FakeClock
from tests.stores import SharedStores
from tests.supervisor.conftest import NodeSim, make_config
from tests.telemetry._scrape import Scrape, http_get, scrape

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]
Admins = Callable[..., AdminClient]
SVC = "supervisor.v1.SupervisorService"


def handled(found: Scrape, method: str, code: str, service: str = SVC) -> float:
    return found.value(
        "grpc_server_handled_total", grpc_type="unary", grpc_service=service, grpc_method=method, grpc_code=code
    )


async def test_reports_refusals_and_fleet_state(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    clock = FakeClock(time.time())
    sup = await started(make_config(tmp_path), clock)
    assert sup.metrics_address is not None
    before = await scrape(sup.metrics_address)
    assert before.value("supervit_nodes", state="online") == 0
    channel = channel_to(sup.address)
    quiet, chatty = NodeSim(channel, "quiet", clock=clock), NodeSim(channel, "chatty", clock=clock)
    for node in (quiet, chatty):
        await node.register()
    for _ in range(3):
        await chatty.report()
    await quiet.report()
    replayed = chatty.report_request()
    await chatty.stub.Report(replayed)
    with pytest.raises(grpc.aio.AioRpcError, match="nonce already used"):
        await chatty.stub.Report(replayed)
    with pytest.raises(grpc.aio.AioRpcError, match="invalid signature"):
        await NodeSim(channel, "chatty", OTHER_SECRET_HEX, clock=clock).health()
    await chatty.health()

    found = await scrape(sup.metrics_address)
    assert found.value("supervit_registrations_total") == 2
    assert found.value("supervit_reports_total") == 5
    assert handled(found, "Report", "OK") == 5
    assert handled(found, "Report", "Unauthenticated") == 1
    assert handled(found, "HealthCheck", "OK") == 1
    assert handled(found, "HealthCheck", "Unauthenticated") == 1
    assert handled(found, "RegisterNode", "OK") == 2
    assert found.value("supervit_auth_refusals_total", reason="replay") == 1
    assert found.value("supervit_auth_refusals_total", reason="signature") == 1
    assert found.value("supervit_nodes", state="online") == 2
    assert found.value("supervit_nodes", state="offline") == 0
    assert found.value("supervit_nonces_remembered") == 8  # 2 registrations, 5 reports, 1 health check
    assert found.value("supervit_db_commit_seconds_count", db="supervisor.db") >= 1
    assert "chatty" not in found.text and "quiet" not in found.text  # no per-node series

    await sup.ingest.flush()
    assert (await scrape(sup.metrics_address)).value("supervit_report_fold_lag_seconds") == 0
    clock.now += 7  # quiet misses three 2 s intervals
    await chatty.report()
    assert await sup.sweep_once() == ["quiet"]
    found = await scrape(sup.metrics_address)
    assert found.value("supervit_nodes", state="online") == 1
    assert found.value("supervit_nodes", state="offline") == 1
    assert found.value("supervit_nodes", state="stopped") == 0
    assert await sup.registry.mark_stopped("chatty")  # as a leaving node's final report does
    found = await scrape(sup.metrics_address)
    assert [found.value("supervit_nodes", state=s) for s in ("online", "offline", "stopped")] == [0, 1, 1]

    ready = await http_get(sup.metrics_address, "/readyz")
    assert (ready.status, json.loads(ready.body)) == (200, {"status": "ready", "checks": {"storage": "ok"}})


async def test_fold_lag_grows_until_the_fold(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    clock = FakeClock(time.time())
    sup = await started(make_config(tmp_path), clock)
    assert sup.metrics_address is not None
    node = NodeSim(channel_to(sup.address), "n1", clock=clock)
    await node.register()
    await node.report()
    clock.now += 30  # the fold is due within a second of real time; the fake clock says 30 s passed
    lag = (await scrape(sup.metrics_address)).value("supervit_report_fold_lag_seconds")
    # Unless the fold already ran (a second of real time), the report is 30 s old by the supervisor's clock.
    assert lag >= 30 or not sup.ingest._unfolded
    await sup.ingest.flush()
    assert (await scrape(sup.metrics_address)).value("supervit_report_fold_lag_seconds") == 0


async def test_catalog_push_failures_directives_and_admin_calls(
    tmp_path: Path, started: Started, channel_to: Channels, admin_to: Admins
) -> None:
    sup = await started(make_config(tmp_path))
    assert sup.metrics_address is not None
    node = NodeSim(channel_to(sup.address), "far", agent_addr="127.0.0.1:1")  # nobody listens there
    await node.register()
    await node.report()
    admin = admin_to(sup.admin_address)
    await admin.add_realm(7, "seven")
    await admin.enqueue_directive("far", supervisor_pb2.REQUEST_FULL_REPORT)

    deadline = time.monotonic() + 10
    while True:
        found = await scrape(sup.metrics_address)
        if found.value("supervit_catalog_push_failures_total") >= 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert found.value("supervit_catalog_push_failures_total") >= 1
    assert found.value("supervit_catalog_pushes_total") == 0
    assert found.value("supervit_catalog_version") == 1
    assert found.value("supervit_nodes_realm_behind") == 1
    assert found.value("supervit_directives_pending") == 1
    # The push's GetRealm to the unreachable node, counted on the client side.
    client = {"grpc_type": "unary", "grpc_service": "supervisor.v1.SupervisedService", "grpc_method": "GetRealm"}
    assert found.value("grpc_client_handled_total", **client, grpc_code="Unavailable") >= 1
    assert found.value("grpc_client_started_total", **client) >= 1
    admin_svc = "supervit.admin.v1.SupervisorAdmin"
    assert handled(found, "PutCatalogRealm", "OK", admin_svc) == 1
    assert handled(found, "EnqueueDirective", "OK", admin_svc) == 1
    # The directive goes out with the next report.
    response = await node.report()
    assert response.directive.type == supervisor_pb2.REQUEST_FULL_REPORT
    assert (await scrape(sup.metrics_address)).value("supervit_directives_pending") == 0


async def test_metrics_off_and_readiness_while_stopping(tmp_path: Path, started: Started) -> None:
    off = await started(make_config(tmp_path / "off", metrics={"listen": ""}))
    assert off.metrics_address is None and off.telemetry is None
    sup = await started(make_config(tmp_path / "on"))
    address = sup.metrics_address
    assert address is not None
    assert (await http_get(address, "/readyz")).status == 200
    await sup.stop(0)
    with pytest.raises(OSError):
        await http_get(address, "/healthz")  # the endpoint is gone with the supervisor


async def test_fleet_figures_on_the_postgres_backend(
    tmp_path: Path, stores: SharedStores, started: Started, channel_to: Channels
) -> None:
    """The same fleet figures from the shared store; readiness probes it; no SQLite-only figures."""
    sup = await started(make_config(tmp_path, server=stores.server_table()))
    assert sup.metrics_address is not None and sup.store.shared
    node = NodeSim(channel_to(sup.address), "pg-node")
    await node.register()
    await node.report(realm_sync_version=0)
    await node.report()
    found = await scrape(sup.metrics_address)
    assert found.value("supervit_nodes", state="online") == 1
    assert found.value("supervit_registrations_total") == 1
    assert found.value("supervit_reports_total") == 2
    assert found.value("supervit_directives_pending") == 0
    assert found.value("supervit_nodes_realm_behind") == 0
    assert "supervit_report_fold_lag_seconds" not in found.families
    assert "supervit_db_commit_seconds" not in {s.name for f in found.family_list for s in f.samples}
    ready = await http_get(sup.metrics_address, "/readyz")
    assert (ready.status, json.loads(ready.body)["checks"]) == (200, {"storage": "ok"})


async def test_client_interceptor_keeps_the_server_time_of_refusals(tmp_path: Path, started: Started) -> None:
    """The node's metrics interceptor on its channel: calls counted by code, and a refusal's
    x-server-time trailer still reaches the client (a skewed clock recovers at the first retry)."""
    from prometheus_client import CollectorRegistry

    from supervit.client import SupervitClient
    from supervit.inventory import ServiceCollector
    from supervit.metrics import StaticMetricsProvider
    from supervit.telemetry import GrpcClientMetrics
    from tests.client.conftest import fast_config
    from tests.node._helpers import METRICS

    sup = await started(make_config(tmp_path))
    registry = CollectorRegistry()
    metrics = GrpcClientMetrics(registry)
    ahead = FakeClock(time.time() + 3600)  # an hour ahead: far outside the 300 s window
    client = SupervitClient(
        fast_config(f"http://{sup.address}", node_id="skewed"),
        ServiceCollector([]),
        metrics=StaticMetricsProvider(METRICS, 4),
        clock=ahead,
        interceptors=[metrics.interceptor()],
    )
    try:
        await client.connect()
        assert (await client.register_node()).message.success
        assert client.clock_skew_secs > 3000
        assert (await client.report()).message.received
    finally:
        await client.stop()
    labels = {"grpc_type": "unary", "grpc_service": SVC, "grpc_method": "RegisterNode"}
    assert registry.get_sample_value("grpc_client_handled_total", {**labels, "grpc_code": "Unauthenticated"}) == 1
    assert registry.get_sample_value("grpc_client_handled_total", {**labels, "grpc_code": "OK"}) == 1
    report = {**labels, "grpc_method": "Report", "grpc_code": "OK"}
    assert registry.get_sample_value("grpc_client_handled_total", report) == 1
