"""RegisterNode, Report and HealthCheck as single calls against the real test supervisor."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from supervit._exceptions import NotRegisteredError, RpcError
from supervit.auth import Action, CredentialVerifier, SharedSecret, build_payload, registration_fingerprint
from supervit.client import (
    ConnectionStatus,
    Directive,
    HealthStatus,
    RegistrationRejectedError,
    RegistrationResult,
    ReportResult,
    SupervitClient,
)
from supervit.metrics import StaticMetricsProvider
from supervit.node import ServiceCollector
from supervit.protocol import supervisor_pb2
from supervit.testing import SupervisorDouble
from tests.client.conftest import METRICS, NODE_ID, fast_config

MakeClient = Callable[..., SupervitClient]


def _status(client: SupervitClient) -> ConnectionStatus:
    return client.state.status


async def test_registration_fingerprint_verifies_on_the_server(
    double: SupervisorDouble, make_client: MakeClient, collector: ServiceCollector, secret: SharedSecret
) -> None:
    config = fast_config(double.endpoint, service_tags=["zeta", "alpha", "zeta", "mid"], location="Frankfurt rack 4")
    client = make_client(config)
    await client.connect()
    response = await client.register_node()

    assert isinstance(response, RegistrationResult) and response.message.success
    [call] = double.calls("RegisterNode")
    assert call.ok, call.details
    request = call.request
    fingerprint = registration_fingerprint(request)
    # The credential signs exactly register:{node_id}:{registration_fingerprint(request)}.
    CredentialVerifier.check_signature(
        request.credential, build_payload(Action.REGISTER, NODE_ID, fingerprint), [secret]
    )
    assert request.node_id == NODE_ID
    assert request.name == "Client test node"
    assert request.location_tag == "test-dc"
    assert request.agent_addr == "127.0.0.1:50055"
    assert request.version == config.version
    assert request.location == "Frankfurt rack 4"
    assert list(request.service_tags) == ["alpha", "mid", "zeta"]
    assert request.power_reserve_level_init == 4
    assert list(request.services) == collector.advertisements()


async def test_registration_without_location_leaves_it_unset(double: SupervisorDouble, make_client: MakeClient) -> None:
    client = make_client(fast_config(double.endpoint, name=""))
    await client.connect()
    await client.register_node()
    [request] = double.registrations()
    assert not request.HasField("location")
    assert request.name == NODE_ID  # an empty name falls back to the node id
    assert list(request.service_tags) == []


async def test_connection_state_progresses(double: SupervisorDouble, make_client: MakeClient) -> None:
    client = make_client(fast_config(double.endpoint))
    assert _status(client) is ConnectionStatus.DISCONNECTED
    await client.connect()
    assert _status(client) is ConnectionStatus.CONNECTED
    await client.register_node()
    state = client.state
    assert state.status is ConnectionStatus.REGISTERED
    assert state.registered_at is not None and state.last_success is not None
    assert state.consecutive_failures == 0
    assert state.current_interval_secs == pytest.approx(0.2)
    double.fail_next("HealthCheck", grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down")
    with pytest.raises(RpcError):
        await client.health_check()
    assert _status(client) is ConnectionStatus.DEGRADED
    assert client.state.consecutive_failures == 1
    await client.health_check()
    assert _status(client) is ConnectionStatus.REGISTERED
    await client.stop()
    assert _status(client) is ConnectionStatus.DISCONNECTED
    await client.stop()  # idempotent
    await client.disconnect()


async def test_rejected_registration_raises_with_the_message(double: SupervisorDouble, make_client: MakeClient) -> None:
    double.register_error = "node id is banned"
    client = make_client(fast_config(double.endpoint))
    await client.connect()
    with pytest.raises(RegistrationRejectedError, match="node id is banned") as info:
        await client.register_node()
    assert isinstance(info.value, RpcError)
    assert info.value.details == "node id is banned"
    assert not client.registered
    assert client.state.consecutive_failures == 1


async def test_report_carries_metrics_statuses_power_and_realm_version(
    double: SupervisorDouble,
    make_client: MakeClient,
    collector: ServiceCollector,
    metrics: StaticMetricsProvider,
    secret: SharedSecret,
) -> None:
    async def realm_version() -> int:
        return 42

    client = make_client(fast_config(double.endpoint), realm_version=realm_version)
    await client.connect()
    await client.register_node()
    collector.record_request("turn-main", 12.0)
    metrics.update(power_reserve_level=2)
    response = await client.report()

    assert isinstance(response, ReportResult) and response.message.received
    [request] = double.reports()
    assert request.realm_sync_version == 42
    assert request.power_reserve_level == 2
    assert request.metrics == METRICS
    assert list(request.services) == collector.statuses()
    assert request.services[1].total_requests == 1  # turn-main, sorted after stun-main
    assert request.credential.timestamp == request.timestamp
    CredentialVerifier.check_signature(
        request.credential, build_payload(Action.REPORT, NODE_ID, request.timestamp), [secret]
    )
    assert client.state.last_report_at is not None


async def test_light_report_omits_metrics_and_services(double: SupervisorDouble, make_client: MakeClient) -> None:
    client = make_client(fast_config(double.endpoint))
    await client.connect()
    await client.register_node()
    await client.report(full=False)
    [request] = double.reports()
    assert not request.HasField("metrics")
    assert len(request.services) == 0
    assert request.power_reserve_level == 4
    assert request.realm_sync_version == 0  # no realm_version callable: 0


async def test_default_metrics_provider_reports_real_figures(double: SupervisorDouble, make_client: MakeClient) -> None:
    client = make_client(fast_config(double.endpoint), metrics=None)
    await client.connect()
    await client.register_node()
    await client.report()
    [request] = double.reports()
    assert request.metrics.memory_total_bytes > 0
    assert request.metrics.disk_total_bytes > 0
    assert 0 <= request.power_reserve_level <= 5


async def test_failing_providers_do_not_fail_the_report(double: SupervisorDouble, make_client: MakeClient) -> None:
    calls = 0

    async def realm_version() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("realm store unavailable")
        return 7

    class BrokenMetrics:
        async def snapshot(self) -> None:
            raise OSError("psutil refused")

    client = make_client(fast_config(double.endpoint), realm_version=realm_version)
    await client.connect()
    await client.register_node()
    await client.report()
    client._metrics = BrokenMetrics()  # type: ignore[assignment]
    await client.report()
    first, second = double.reports()
    # The last good figures stand in: reporting 0 would make the supervisor resync realms.
    assert second.realm_sync_version == first.realm_sync_version == 7
    assert second.power_reserve_level == first.power_reserve_level == 4
    assert second.metrics == first.metrics


async def test_report_from_an_unregistered_node_is_not_registered_error(
    double: SupervisorDouble, make_client: MakeClient
) -> None:
    client = make_client(fast_config(double.endpoint))
    await client.connect()
    with pytest.raises(NotRegisteredError) as info:
        await client.report()
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert info.value.details == "node not registered"
    await client.register_node()
    assert (await client.report()).message.received


async def test_health_check(double: SupervisorDouble, make_client: MakeClient) -> None:
    client = make_client(fast_config(double.endpoint))
    await client.connect()
    response = await client.health_check()
    assert response.healthy
    assert isinstance(response, HealthStatus) and response.latency_ms == 1
    assert response.server_timestamp == response.message.server_timestamp > 0
    [call] = double.calls("HealthCheck")
    assert call.ok


async def test_answers_are_dataclasses_with_the_message_kept(double: SupervisorDouble, make_client: MakeClient) -> None:
    double.heartbeat_interval_secs = 17
    double.next_report_interval_secs = 9
    client = make_client(fast_config(double.endpoint))
    await client.connect()
    registered = await client.register_node()
    assert registered.heartbeat_interval_secs == 17 and registered.resource_version == 1
    assert registered.registered_at_iso is not None
    assert registered.registered_at_iso == registered.message.registered_at_iso
    assert registered.server_timestamp == registered.message.server_timestamp > 0

    plain = await client.report()
    assert plain.directive is None and plain.next_report_interval_secs == 9
    double.queue_directive(supervisor_pb2.REQUEST_FULL_REPORT, "now")
    steered = await client.report()
    assert steered.directive == Directive(supervisor_pb2.REQUEST_FULL_REPORT, "now", steered.message.directive)
    assert steered.message.HasField("directive")
    double.queue_directive(supervisor_pb2.REQUEST_FULL_REPORT)
    assert (await client.report()).directive == Directive(
        supervisor_pb2.REQUEST_FULL_REPORT, None, supervisor_pb2.Directive()
    )
    # A directive type this build does not know parses as unset: type None.
    unknown = supervisor_pb2.Directive.FromString(b"\x08\x63")  # field 1 = 99
    assert Directive.from_message(unknown).type is None


async def test_calls_before_connect_fail_clearly(double: SupervisorDouble, make_client: MakeClient) -> None:
    client = make_client(fast_config(double.endpoint))
    with pytest.raises(RpcError, match="not connected") as info:
        await client.health_check()
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert double.calls() == []


async def test_connect_times_out_when_nobody_listens(double: SupervisorDouble, make_client: MakeClient) -> None:
    endpoint = double.endpoint
    await double.stop()
    client = make_client(fast_config(endpoint, connect_timeout_secs=0.5))
    with pytest.raises(RpcError, match="not reachable") as info:
        await client.connect()
    assert info.value.code == grpc.StatusCode.UNAVAILABLE


async def test_context_manager_opens_and_closes(double: SupervisorDouble, collector: ServiceCollector) -> None:
    async with SupervitClient(fast_config(double.endpoint), collector, metrics=StaticMetricsProvider(METRICS, 3)) as c:
        assert _status(c) is ConnectionStatus.CONNECTED
        await c.register_node()
        await c.start_status_reporting()
        await double.wait_for(lambda: len(double.reports()) >= 1, what="a report")
    assert _status(c) is ConnectionStatus.DISCONNECTED


async def test_rpc_deadline_applies(double: SupervisorDouble, make_client: MakeClient) -> None:
    double.delay_secs = 2.0
    client = make_client(fast_config(double.endpoint, rpc_timeout_secs=0.3))
    await client.connect()
    with pytest.raises(RpcError) as info:
        await client.health_check()
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_report_not_received_is_an_error(double: SupervisorDouble, make_client: MakeClient) -> None:
    double.report_received = False
    double.queue_directive(supervisor_pb2.DirectiveType.ADJUST_INTERVAL, "3")
    client = make_client(fast_config(double.endpoint))
    await client.connect()
    await client.register_node()
    with pytest.raises(RpcError, match="received=false"):
        await client.report()
    assert client.state.consecutive_failures == 1
    assert client.state.last_report_at is None
    assert client.current_interval_secs == pytest.approx(0.2)  # a refused report steers nothing
