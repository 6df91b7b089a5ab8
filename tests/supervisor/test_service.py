"""SupervisorService over real grpc.aio on 127.0.0.1: registration, reports, health, credential rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.protocol import supervisor_pb2
from supervit.supervisor import NOT_REGISTERED_DETAILS, SERVER_TIME_METADATA_KEY
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX
from tests.supervisor.conftest import NODE_A_HEX, NODE_A_NEW_HEX, NodeSim, make_config

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]


def server_time(error: grpc.aio.AioRpcError) -> int:
    values = [v for k, v in (error.trailing_metadata() or ()) if k == SERVER_TIME_METADATA_KEY]
    assert values, f"no {SERVER_TIME_METADATA_KEY} in {error.trailing_metadata()}"
    return int(values[0])


async def test_register_report_health_and_registry(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    """A node registers, reports and health-checks; the registry holds every field and figure."""
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1", agent_addr="127.0.0.1:7000")
    reg = await node.register()
    assert reg.success and reg.heartbeat_interval_secs == 3 and reg.resource_version == 0
    assert reg.registered_at_iso.endswith("Z") and reg.server_timestamp > 0
    resp = await node.report(realm_sync_version=0, power=2)
    assert resp.received and resp.next_report_interval_secs == 2 and not resp.HasField("directive")
    health = await node.health()
    assert health.healthy and health.latency_ms >= 0

    await sup.ingest.flush()  # the report was acknowledged before its commit (write-behind)
    record = await sup.registry.get("n1")
    assert record is not None and record.online and record.reports == 1 and record.registrations == 1
    assert record.agent_addr == "127.0.0.1:7000" and record.power_reserve_level == 2
    assert record.registration.location == "rack 4" and list(record.registration.service_tags) == ["edge", "eu"]
    assert record.advertised_services[0].domain_name == "turn.example"
    assert record.metrics is not None and record.metrics.cpu_usage_percent == 12.5
    assert record.services[0].active_connections == 7
    assert not record.registration.HasField("credential") and record.last_report is not None
    assert not record.last_report.HasField("credential")


async def test_report_from_unregistered_node_is_not_found_with_server_time(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """A correctly signed report from a node the registry does not know: NOT_FOUND "node not registered"."""
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "ghost")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.report()
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == NOT_REGISTERED_DETAILS
    assert server_time(info.value) > 0
    # After registering, the same node reports fine.
    await node.register()
    assert (await node.report()).received


async def test_unknown_node_without_fleet_secret_is_unauthenticated(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """With only per-node secrets, a node not listed is refused whatever it signs with."""
    config = make_config(tmp_path, fleet={"shared_secret": None}, node_secrets={"a": NODE_A_HEX})
    sup = await started(config)
    for call in ("register", "report", "health"):
        stranger = NodeSim(channel_to(sup.address), "stranger", SECRET_HEX)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await getattr(stranger, call)()
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, call
        assert info.value.details() == "authentication failed"
        assert server_time(info.value) > 0


async def test_per_node_secret_replaces_fleet_secret(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    """A node listed in [node_secrets] must use its own key; others keep using the fleet key."""
    sup = await started(make_config(tmp_path, node_secrets={"a": NODE_A_HEX}))
    channel = channel_to(sup.address)
    assert (await NodeSim(channel, "a", NODE_A_HEX).register()).success
    assert (await NodeSim(channel, "b", SECRET_HEX).register()).success
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await NodeSim(channel, "a", SECRET_HEX).register()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and info.value.details() == "invalid signature"


async def test_two_key_rotation_accepts_either(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    """During a rotation the node may sign with the old or the new key; a third key is refused."""
    config = make_config(tmp_path, node_secrets={"a": [NODE_A_HEX, NODE_A_NEW_HEX]})
    sup = await started(config)
    channel = channel_to(sup.address)
    old, new = NodeSim(channel, "a", NODE_A_HEX), NodeSim(channel, "a", NODE_A_NEW_HEX)
    assert (await old.register()).success
    assert (await new.report()).received
    assert (await old.report()).received
    assert (await new.health()).healthy
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await NodeSim(channel, "a", OTHER_SECRET_HEX).report()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_replayed_and_stale_reports_are_refused(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    """The same Report twice is a replay; a report signed far in the past is out of the window."""
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    request = node.report_request()
    await node.stub.Report(request)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.Report(request)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and info.value.details() == "nonce already used"
    stale = node.report_request(timestamp=node.signer.now() - 3600)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.Report(stale)
    assert info.value.details() == "timestamp out of range"
    assert abs(server_time(info.value) - node.signer.now()) <= 2
    tampered = node.report_request()
    tampered.timestamp += 1  # the signed payload changed
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.Report(tampered)
    assert info.value.details() == "invalid signature"


async def test_replayed_registration_is_refused(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    request = node.register_request()
    await node.stub.RegisterNode(request)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.RegisterNode(request)
    assert info.value.details() == "nonce already used"


async def test_success_response_carries_server_time_in_the_body_only(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    call = node.stub.RegisterNode(node.register_request())
    response = await call
    assert abs(response.server_timestamp - time.time()) < 5
    assert SERVER_TIME_METADATA_KEY not in dict(await call.trailing_metadata() or ())


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"agent_addr": "nowhere"}, "agent_addr"),
        ({"agent_addr": "127.0.0.1:0"}, "port 0"),
        ({"power_reserve_level_init": 9}, "power_reserve_level_init"),
    ],
)
async def test_invalid_registration_is_refused_with_success_false(
    tmp_path: Path, started: Started, channel_to: Channels, fields: dict[str, Any], problem: str
) -> None:
    sup = await started(make_config(tmp_path))
    response = await NodeSim(channel_to(sup.address), "n1").register(**fields)
    assert not response.success and problem in response.error_message
    assert await sup.registry.get("n1") is None


async def test_power_level_out_of_range_is_invalid_argument(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.report(power=6)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "0-5" in (info.value.details() or "")


async def test_incomplete_request_is_invalid_argument(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.HealthCheck(supervisor_pb2.HealthCheckRequest(node_id="n1"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "credential" in (info.value.details() or "")


async def test_per_node_interval_override(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    config = make_config(tmp_path, nodes={"slow": {"report_interval_secs": 30, "heartbeat_interval_secs": 40}})
    sup = await started(config)
    channel = channel_to(sup.address)
    slow, fast = NodeSim(channel, "slow"), NodeSim(channel, "fast")
    assert (await slow.register()).heartbeat_interval_secs == 40
    assert (await fast.register()).heartbeat_interval_secs == 3
    assert (await slow.report()).next_report_interval_secs == 30
    assert (await fast.report()).next_report_interval_secs == 2


async def test_health_and_reflection_services(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    """grpc.health.v1 reports SupervisorService SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    sup = await started(make_config(tmp_path))
    stub = health_pb2_grpc.HealthStub(channel_to(sup.address))
    reply = await stub.Check(health_pb2.HealthCheckRequest(service="supervisor.v1.SupervisorService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_port_in_use_fails_loudly(tmp_path: Path, started: Started) -> None:
    """A second supervisor on a busy port refuses to start (no silent SO_REUSEPORT sharing)."""
    from supervit._exceptions import SupervitError

    first = await started(make_config(tmp_path))
    port = first.address.rsplit(":", 1)[1]
    with pytest.raises(SupervitError, match="cannot listen"):
        await started(make_config(tmp_path / "other", server={"listen": f"127.0.0.1:{port}"}))
