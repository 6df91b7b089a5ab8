"""Issue 10: the opt-in body MAC (x-supervit-body-mac) — supervit always sends it, receivers verify it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.auth import BODY_MAC_METADATA_KEY, SharedSecret, body_mac, body_mac_metadata
from supervit.client import SupervitClient
from supervit.inventory import ServiceCollector
from supervit.metrics import StaticMetricsProvider
from supervit.node import NodeDaemon
from supervit.protocol import supervised_pb2, supervisor_pb2
from supervit.supervisor import AdminClient
from tests.client.conftest import fast_config
from tests.conftest import SECRET_HEX
from tests.node._helpers import METRICS, NodeClient
from tests.node.test_daemon import NODE
from tests.node.test_daemon import make_config as node_config
from tests.supervisor.conftest import ADMIN_HEX, NodeSim, make_config

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]


def _required(tmp_path: Path) -> Any:
    return make_config(tmp_path, security={"require_body_mac": True})


async def test_supervit_clients_send_it_and_a_requiring_supervisor_accepts_them(
    tmp_path: Path, started: Started
) -> None:
    sup = await started(_required(tmp_path))
    config = fast_config(f"http://{sup.address}", node_id="n1")
    client = SupervitClient(config, ServiceCollector([]), metrics=StaticMetricsProvider(METRICS, 4))
    try:
        await client.connect()
        assert (await client.register_node()).message.success
        assert (await client.report()).message.received
        assert (await client.health_check()).healthy
    finally:
        await client.stop()
    async with AdminClient(sup.admin_address or "", SharedSecret.from_hex(ADMIN_HEX)) as admin:
        assert [n.node_id for n in (await admin.list_nodes()).nodes] == ["n1"]


async def test_a_requiring_supervisor_refuses_requests_without_it(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    sup = await started(_required(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    for call in (node.register, node.report, node.health):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call()
        assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "body mac required")
    registration = node.register_request()
    answer = await node.stub.RegisterNode(registration, metadata=body_mac_metadata(node.secret, registration))
    assert answer.success


async def test_a_rewritten_body_is_refused_even_when_not_required(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """The credential signs report:{node}:{timestamp} only; the MAC also covers the figures."""
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()  # without a MAC: accepted, the option is off
    honest = node.report_request(power=5, realm_sync_version=3)
    mac = body_mac(node.secret, honest.SerializeToString())
    tampered = supervisor_pb2.ReportRequest()
    tampered.CopyFrom(honest)
    tampered.power_reserve_level, tampered.realm_sync_version = 0, 999  # an on-path rewrite
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.Report(tampered, metadata=((BODY_MAC_METADATA_KEY, mac),))
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "invalid body mac")
    # The tampered attempt did not burn the honest request's nonce.
    assert (await node.stub.Report(honest, metadata=((BODY_MAC_METADATA_KEY, mac),))).received


async def test_a_requiring_node_accepts_the_supervisors_pushes_and_refuses_bare_requests(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    config = node_config(tmp_path / "node")
    config.supervisor.security.require_body_mac = True
    daemon = NodeDaemon(config)
    await daemon.start()
    try:
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            bare = NodeClient(channel, node_id=NODE)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await bare.call(supervised_pb2.GetRealmRequest(realm_id=1))
            assert info.value.details() == "body mac required"
            request = bare.sign(supervised_pb2.GetRealmRequest(realm_id=1))
            secret = SharedSecret.from_hex(SECRET_HEX)
            assert not (await bare.stub.GetRealm(request, metadata=body_mac_metadata(secret, request))).success
        # The supervisor's catalog push (CreateRealm) carries the MAC.
        sup = await started(make_config(tmp_path, security={"require_body_mac": True}))
        sim = NodeSim(channel_to(sup.address), NODE, agent_addr=daemon.address)
        await sim.stub.RegisterNode(reg := sim.register_request(), metadata=body_mac_metadata(sim.secret, reg))
        async with AdminClient(sup.admin_address or "", SharedSecret.from_hex(ADMIN_HEX)) as admin:
            await admin.add_realm(7, "seven")
        await sup.pusher.wait_idle()
        assert daemon.supervisord is not None
        assert await daemon.supervisord.realm_store.get(7) is not None
    finally:
        await daemon.stop(0)
