"""supervit.testing: the helpers library users test their own code with behave as documented."""

from __future__ import annotations

import grpc
import pytest

from supervit import ServiceCollector, SupervitClient, SupervitConfig
from supervit.auth import SharedSecret, Signer, request_payload
from supervit.protocol import supervisor_pb2, supervisor_pb2_grpc
from supervit.testing import FakeClock, SupervisorDouble
from tests.conftest import SECRET_HEX


def test_fake_clock_moves_only_when_told() -> None:
    """FakeClock returns its time until advanced (forward or back)."""
    clock = FakeClock(100.0)
    assert clock() == 100.0
    assert clock.advance(5) == 105.0
    assert clock.advance(-10) == 95.0
    assert clock() == 95.0


async def test_double_serves_a_real_client_and_records_the_calls() -> None:
    """The documented example: a SupervitClient registers and reports against the double."""
    async with SupervisorDouble(SharedSecret.from_hex(SECRET_HEX)) as double:
        config = SupervitConfig(
            node_id="n1", endpoint=double.endpoint, shared_secret=SECRET_HEX, agent_addr="127.0.0.1:50055"
        )
        async with SupervitClient(config, ServiceCollector()) as client:
            await client.register_node()
            await client.report()
        assert [r.node_id for r in double.registrations()] == ["n1"]
        assert [r.node_id for r in double.reports()] == ["n1"]


async def test_double_refuses_a_replayed_credential() -> None:
    """The double verifies credentials like the reference supervisor: a replay is UNAUTHENTICATED."""
    secret = SharedSecret.from_hex(SECRET_HEX)
    async with SupervisorDouble(secret) as double:
        request = supervisor_pb2.HealthCheckRequest(node_id="n1")
        request.credential.CopyFrom(Signer(secret).credential(request_payload(request)))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{double.port}") as channel:
            stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
            assert (await stub.HealthCheck(request)).healthy
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.HealthCheck(request)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert [r.ok for r in double.calls("HealthCheck")] == [True, False]
