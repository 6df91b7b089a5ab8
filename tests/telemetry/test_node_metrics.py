"""A node daemon with metrics on: gRPC server metrics, refusals by reason, node figures, commits, readiness."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from supervit import SupervitError
from supervit.auth import SharedSecret
from supervit.config import load_node_config
from supervit.metrics import StaticMetricsProvider
from supervit.node import ClientWiring, NodeDaemon
from supervit.protocol import supervised_pb2 as sd
from supervit.telemetry import GrpcClientMetrics
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX
from tests.node._helpers import METRICS, NodeClient
from tests.telemetry._scrape import Scrape, http_get, scrape

NODE = "metrics-node"
SVC = "supervisor.v1.SupervisedService"


def node_config(data_dir: Path, *, listen: str = "127.0.0.1:0", endpoint: str | None = None) -> Any:
    client: dict[str, Any] = {"node_id": NODE, "shared_secret": SECRET_HEX}
    if endpoint:
        client["endpoint"] = endpoint
    supervisor = {
        "client": client,
        "metrics": {"listen": listen},
        "supervisord": {
            "ip": "127.0.0.1",
            "port": 0,
            "data_dir": str(data_dir),
            "shutdown_grace_secs": 0,
            "services": [
                {"name": "turn-1", "type": "TURN", "port": 3478},
                {"name": "sig-1", "type": "signaling", "state": "error"},
            ],
        },
    }
    return load_node_config(data={"supervisor": supervisor}, environ={})


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeDaemon]:
    daemon = NodeDaemon(node_config(tmp_path), metrics=StaticMetricsProvider(METRICS, 4))
    await daemon.start()
    yield daemon
    await daemon.stop(0)


def handled(found: Scrape, method: str, code: str, service: str = SVC) -> float:
    return found.value(
        "grpc_server_handled_total", grpc_type="unary", grpc_service=service, grpc_method=method, grpc_code=code
    )


async def test_calls_and_refusals_are_counted_exactly(node: NodeDaemon) -> None:
    assert node.metrics_address is not None
    before = await scrape(node.metrics_address)
    async with grpc.aio.insecure_channel(node.address) as channel:
        client = NodeClient(channel, node_id=NODE)
        for _ in range(3):
            await client.call(sd.ListRealmsRequest())
        signed = client.sign(sd.GetNodeInfoRequest())
        await client.call(signed, sign=False)
        with pytest.raises(grpc.aio.AioRpcError) as replay:
            await client.call(signed, sign=False)
        assert replay.value.details() == "nonce already used"
        wrong = NodeClient(channel, node_id=NODE, secret=SharedSecret.from_hex(OTHER_SECRET_HEX))
        with pytest.raises(grpc.aio.AioRpcError, match="invalid signature"):
            await wrong.call(sd.GetNodeInfoRequest())
        with pytest.raises(grpc.aio.AioRpcError, match="timestamp out of range"):
            await client.call(sd.GetNodeInfoRequest(), timestamp=int(time.time()) - 3600)
        with pytest.raises(grpc.aio.AioRpcError) as malformed:
            await client.raw("ListRealms", b"\xff\xff\xff")
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = await scrape(node.metrics_address)

    def delta(method: str, code: str) -> float:
        return handled(after, method, code) - handled(before, method, code)

    assert delta("ListRealms", "OK") == 3
    assert delta("ListRealms", "InvalidArgument") == 1
    assert delta("GetNodeInfo", "OK") == 1
    assert delta("GetNodeInfo", "Unauthenticated") == 3
    labels = {"grpc_type": "unary", "grpc_service": SVC, "grpc_method": "GetNodeInfo"}
    assert after.value("grpc_server_started_total", **labels) == 4
    assert after.value("grpc_server_handling_seconds_count", **labels) == 4
    assert after.value("grpc_server_handling_seconds_sum", **labels) > 0
    for reason in ("replay", "signature", "timestamp", "malformed"):
        assert after.value("supervit_auth_refusals_total", reason=reason) == 1, reason
    # No series names a node, a peer or a secret.
    assert NODE not in after.text and SECRET_HEX not in after.text and OTHER_SECRET_HEX not in after.text


async def test_health_and_reflection_are_counted_streams_included(node: NodeDaemon) -> None:
    assert node.metrics_address is not None
    async with grpc.aio.insecure_channel(node.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert (await health.Check(health_pb2.HealthCheckRequest(service=SVC))).status == 1
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = reflect.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        listed = await call.read()
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert SVC in {s.name for s in listed.list_services_response.service}

    health_svc, refl_svc = "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"

    async def settled() -> Scrape:
        # The cancelled Watch ends on the server a moment after the client cancels.
        deadline = time.monotonic() + 5
        while True:
            found = await scrape(node.metrics_address or "")
            if found.sum("grpc_server_handled_total", grpc_method="Watch") or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)

    found = await settled()
    assert handled(found, "Check", "OK", health_svc) == 1
    assert handled(found, "Check", "NotFound", health_svc) == 1
    watch_labels = {"grpc_type": "server_stream", "grpc_service": health_svc, "grpc_method": "Watch"}
    assert found.value("grpc_server_started_total", **watch_labels) == 1
    assert found.value("grpc_server_handled_total", **watch_labels, grpc_code="Canceled") == 1
    refl_labels = {"grpc_type": "bidi_stream", "grpc_service": refl_svc, "grpc_method": "ServerReflectionInfo"}
    assert found.value("grpc_server_handled_total", **refl_labels, grpc_code="OK") == 1
    # Refusal reasons are only counted for supervit's own services.
    assert found.sum("supervit_auth_refusals_total") == 0


async def test_node_figures_and_commit_metrics(node: NodeDaemon) -> None:
    assert node.metrics_address is not None
    async with grpc.aio.insecure_channel(node.address) as channel:
        client = NodeClient(channel, node_id=NODE)
        for realm_id, version in ((1, 4), (2, 9)):
            request = sd.CreateRealmRequest(
                realm_id=realm_id, name=f"r{realm_id}", enabled=True, version=version, expires_at=0
            )
            assert (await client.call(request)).success
        # Writes commit their nonce in actrix.db with the realm; a read's nonce goes to nonce.db.
        assert (await client.call(sd.GetRealmRequest(realm_id=1))).success
    found = await scrape(node.metrics_address)
    assert found.value("supervit_realms") == 2
    assert found.value("supervit_max_realm_version") == 9
    assert found.value("supervit_power_reserve_level") == 4
    assert found.value("supervit_nonces_remembered") == 3
    assert found.value("supervit_service_up", service="turn-1") == 1
    assert found.value("supervit_service_up", service="sig-1") == 0
    # Every acknowledged write was committed: both databases saw commits of at least one operation.
    for db in ("actrix.db", "nonce.db"):
        assert found.value("supervit_db_commit_seconds_count", db=db) >= 1, db
        assert found.value("supervit_db_commit_batch_size_sum", db=db) >= found.value(
            "supervit_db_commit_seconds_count", db=db
        )
    assert found.value("supervit_db_commit_batch_size_sum", db="actrix.db") >= 2
    # A serve-only node has no reporting client, hence no report figures.
    assert "supervit_registered" not in found.families
    ready = await http_get(node.metrics_address, "/readyz")
    assert (ready.status, json.loads(ready.body)["checks"]) == (200, {"storage": "ok"})


async def test_readiness_follows_the_reporting_client_and_stopping(tmp_path: Path) -> None:
    """With an endpoint configured, /readyz waits for the registration; a stopping daemon is not ready."""

    class Client:
        def __init__(self, wiring: ClientWiring) -> None:
            self.state: Any = None

        async def start_status_reporting(self) -> None: ...

        async def stop(self) -> None: ...

    made: list[Client] = []

    def factory(wiring: ClientWiring) -> Client:
        made.append(Client(wiring))
        return made[-1]

    from supervit.client import ConnectionState, ConnectionStatus

    config = node_config(tmp_path, endpoint="http://127.0.0.1:9")
    daemon = NodeDaemon(config, metrics=StaticMetricsProvider(METRICS, 4), client_factory=factory)
    await daemon.start()
    try:
        assert daemon.metrics_address is not None
        ready = await http_get(daemon.metrics_address, "/readyz")
        assert ready.status == 503
        assert json.loads(ready.body)["checks"]["supervisor"] == "not registered with the supervisor"
        (client,) = made
        client.state = ConnectionState(
            ConnectionStatus.REGISTERED,
            last_success=1.0,
            consecutive_failures=0,
            clock_skew_secs=-2.5,
            last_report_at=1234.5,
            current_interval_secs=30.0,
            registered_at=1.0,
            reports_succeeded=7,
            report_failures={"UNAVAILABLE": 2, "UNAUTHENTICATED": 1},
        )
        assert (await http_get(daemon.metrics_address, "/readyz")).status == 200
        found = await scrape(daemon.metrics_address)
        assert found.value("supervit_registered") == 1
        assert found.value("supervit_clock_skew_seconds") == -2.5
        assert found.value("supervit_last_report_success_timestamp_seconds") == 1234.5
        assert found.value("supervit_report_interval_seconds") == 30
        assert found.value("supervit_report_success_total") == 7
        assert found.value("supervit_report_failure_total", code="Unavailable") == 2
        assert found.value("supervit_report_failure_total", code="Unauthenticated") == 1
        daemon.request_stop(5, "test")
        ready = await http_get(daemon.metrics_address, "/readyz")
        assert (ready.status, json.loads(ready.body)["checks"]["storage"]) == (503, "stopping")
    finally:
        await daemon.stop(0)
    assert daemon._http is None


async def test_metrics_disabled_binds_nothing_and_costs_nothing(tmp_path: Path) -> None:
    daemon = NodeDaemon(node_config(tmp_path, listen=""), metrics=StaticMetricsProvider(METRICS, 4))
    await daemon.start()
    try:
        assert daemon.metrics_address is None and daemon.telemetry is None
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            assert (await NodeClient(channel, node_id=NODE).call(sd.ListRealmsRequest())).success
    finally:
        await daemon.stop(0)


async def test_a_taken_metrics_port_fails_the_start_before_anything_opens(tmp_path: Path) -> None:
    first = NodeDaemon(node_config(tmp_path / "a"), metrics=StaticMetricsProvider(METRICS, 4))
    await first.start()
    try:
        assert first.metrics_address is not None
        second = NodeDaemon(node_config(tmp_path / "b", listen=first.metrics_address))
        with pytest.raises(SupervitError, match=r"cannot listen on .* for metrics"):
            await second.start()
        assert second._db is None and second._rpc is None
        assert not (tmp_path / "b").exists()
    finally:
        await first.stop(0)


async def test_client_interceptor_counts_calls_by_code(node: NodeDaemon) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics = GrpcClientMetrics(registry)
    async with grpc.aio.insecure_channel(node.address, interceptors=[metrics.interceptor()]) as channel:
        client = NodeClient(channel, node_id=NODE)
        await client.call(sd.ListRealmsRequest())
        await client.call(sd.ListRealmsRequest())
        with pytest.raises(grpc.aio.AioRpcError):
            await NodeClient(channel, node_id=NODE, secret=SharedSecret.from_hex(OTHER_SECRET_HEX)).call(
                sd.ListRealmsRequest()
            )
    labels = {"grpc_type": "unary", "grpc_service": SVC, "grpc_method": "ListRealms"}
    assert registry.get_sample_value("grpc_client_started_total", labels) == 3
    assert registry.get_sample_value("grpc_client_handled_total", {**labels, "grpc_code": "OK"}) == 2
    assert registry.get_sample_value("grpc_client_handled_total", {**labels, "grpc_code": "Unauthenticated"}) == 1
    assert registry.get_sample_value("grpc_client_handling_seconds_count", labels) == 3
