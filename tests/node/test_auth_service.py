"""AuthService and the served endpoint: credential refusals, malformed requests, limits, health, reflection."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from supervit._exceptions import ConfigError, NonceStorageError
from supervit.auth import MemoryNonceStorage, NonceStorage, SharedSecret
from supervit.node import AuthService, add_supervised_service
from supervit.protocol import common_pb2, supervised_pb2, supervised_pb2_grpc
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX, FakeClock
from tests.node._helpers import NODE_ID, NodeClient, RunningNode, running_node, status_of

sd = supervised_pb2


async def expect_status(node: RunningNode, request: Any, code: grpc.StatusCode, **kwargs: Any) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.call(request, **kwargs)
    got, details = status_of(info)
    assert got == code, details
    return details


async def test_valid_then_replay(node: RunningNode) -> None:
    """A valid credential is accepted once; the identical request again is "nonce already used"."""
    request = node.client.sign(sd.GetNodeInfoRequest())
    assert (await node.client.call(request, sign=False)).success
    details = await expect_status(node, request, grpc.StatusCode.UNAUTHENTICATED, sign=False)
    assert details == "nonce already used"


@pytest.mark.parametrize("offset", [-301, 301, -86_400])
async def test_stale_or_future_timestamp(node: RunningNode, offset: int) -> None:
    """Timestamps outside the 300 s window → "timestamp out of range"."""
    details = await expect_status(
        node, sd.GetRealmRequest(realm_id=1), grpc.StatusCode.UNAUTHENTICATED, timestamp=int(time.time()) + offset
    )
    assert details == "timestamp out of range"


async def test_wrong_secret(node: RunningNode) -> None:
    """A credential signed with another secret → "invalid signature"."""
    stranger = NodeClient(node.channel, secret=SharedSecret.from_hex(OTHER_SECRET_HEX))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stranger.call(sd.ListRealmsRequest())
    assert status_of(info) == (grpc.StatusCode.UNAUTHENTICATED, "invalid signature")


async def test_wrong_node_id(node: RunningNode) -> None:
    """A credential signed for another node's id → "invalid signature"."""
    other = NodeClient(node.channel, node_id="some-other-node")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await other.call(sd.GetNodeInfoRequest())
    assert status_of(info) == (grpc.StatusCode.UNAUTHENTICATED, "invalid signature")


async def test_tampered_request_is_refused_before_acting(node: RunningNode) -> None:
    """Signed for realm 1, sent for realm 2 → "invalid signature" and nothing is created."""
    request = node.client.sign(sd.CreateRealmRequest(realm_id=1, name="x", enabled=True, version=1, expires_at=0))
    request.realm_id = 2
    details = await expect_status(node, request, grpc.StatusCode.UNAUTHENTICATED, sign=False)
    assert details == "invalid signature"
    assert (await node.client.call(sd.ListRealmsRequest())).total_count == 0


async def test_tampered_config_type(node: RunningNode) -> None:
    """The config type is part of the payload: changing it after signing is refused."""
    request = node.client.sign(sd.GetConfigRequest(config_type=common_pb2.TURN_REALM, config_key="k"))
    request.config_type = common_pb2.CUSTOM
    assert await expect_status(node, request, grpc.StatusCode.UNAUTHENTICATED, sign=False) == "invalid signature"


async def test_garbled_signature(node: RunningNode) -> None:
    """A signature that is not base64 → "invalid signature"."""
    request = node.client.sign(sd.GetNodeInfoRequest())
    request.credential.signature = "%%% not base64 %%%"
    assert await expect_status(node, request, grpc.StatusCode.UNAUTHENTICATED, sign=False) == "invalid signature"


async def test_rotation_accepts_every_configured_secret(tmp_path: Path) -> None:
    """With a list of secrets (rotation), credentials signed with any of them are accepted."""
    async with running_node(tmp_path, secret=[OTHER_SECRET_HEX, SharedSecret.from_hex(SECRET_HEX)]) as node:
        old = NodeClient(node.channel, secret=SharedSecret.from_hex(SECRET_HEX))
        new = NodeClient(node.channel, secret=SharedSecret.from_hex(OTHER_SECRET_HEX))
        assert (await old.call(sd.GetNodeInfoRequest())).success
        assert (await new.call(sd.GetNodeInfoRequest())).success


async def test_nonce_store_failure_is_internal(tmp_path: Path) -> None:
    """A nonce store that cannot record → INTERNAL, never a silent accept."""

    class FailingNonces(NonceStorage):
        async def consume(self, nonce: str, expires_at: float) -> bool:
            raise NonceStorageError("disk full")

    async with running_node(tmp_path, nonces=FailingNonces()) as node:
        details = await expect_status(node, sd.GetNodeInfoRequest(), grpc.StatusCode.INTERNAL)
        assert details == "nonce storage failure"


async def test_missing_required_field_is_invalid_argument(node: RunningNode) -> None:
    """A request without a required field → INVALID_ARGUMENT naming it (before any auth check)."""
    partial = node.client.sign(sd.CreateRealmRequest(realm_id=1, name="x", enabled=True, expires_at=0))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.raw("CreateRealm", partial.SerializePartialToString())
    code, details = status_of(info)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "version" in details
    no_credential = sd.GetRealmRequest(realm_id=1)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.client.raw("GetRealm", no_credential.SerializePartialToString())
    code, details = status_of(info)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "credential" in details


async def test_garbage_bytes_are_invalid_argument_and_server_keeps_serving(node: RunningNode) -> None:
    """Arbitrary bytes → INVALID_ARGUMENT; the next proper call works."""
    for method in ("CreateRealm", "ListRealms", "Shutdown"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await node.client.raw(method, b"\xff\xff\xff\x07garbage\x00\x01")
        assert status_of(info)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert (await node.client.call(sd.GetNodeInfoRequest())).success


async def test_oversize_message_is_resource_exhausted(node: RunningNode) -> None:
    """A request above max_message_bytes (64 KiB here) → RESOURCE_EXHAUSTED; the server keeps serving."""
    huge = sd.CreateRealmRequest(realm_id=1, name="x" * 100_000, enabled=True, version=1, expires_at=0)
    await expect_status(node, huge, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert (await node.client.call(sd.ListRealmsRequest())).total_count == 0


async def test_health_and_reflection(node: RunningNode) -> None:
    """grpc.health.v1 reports SERVING; reflection lists supervisor.v1.SupervisedService."""
    health = health_pb2_grpc.HealthStub(node.channel)
    for service in ("", "supervisor.v1.SupervisedService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(node.channel)
    call = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = [s.name async for reply in call for s in reply.list_services_response.service]
    assert "supervisor.v1.SupervisedService" in names


class CountingService(supervised_pb2_grpc.SupervisedServiceServicer):
    """A synchronous implementation: AuthService must wrap any SupervisedService."""

    def __init__(self) -> None:
        self.calls = 0

    def _done(self, response: Any) -> Any:
        self.calls += 1
        return response

    def UpdateConfig(self, request: Any, context: Any) -> Any:
        return self._done(sd.UpdateConfigResponse(success=True))

    def GetConfig(self, request: Any, context: Any) -> Any:
        return self._done(sd.GetConfigResponse(success=True, config_value="v"))

    def CreateRealm(self, request: Any, context: Any) -> Any:
        return self._done(sd.CreateRealmResponse(success=True))

    def GetRealm(self, request: Any, context: Any) -> Any:
        return self._done(sd.GetRealmResponse(success=False, error_message="none"))

    def UpdateRealm(self, request: Any, context: Any) -> Any:
        return self._done(sd.UpdateRealmResponse(success=True))

    def DeleteRealm(self, request: Any, context: Any) -> Any:
        return self._done(sd.DeleteRealmResponse(success=True))

    def ListRealms(self, request: Any, context: Any) -> Any:
        return self._done(sd.ListRealmsResponse(success=True, total_count=0))

    def GetNodeInfo(self, request: Any, context: Any) -> Any:
        return self._done(
            sd.GetNodeInfoResponse(success=True, node_id="n", name="n", version="v", location_tag="t", uptime_secs=0)
        )

    def Shutdown(self, request: Any, context: Any) -> Any:
        return self._done(sd.ShutdownResponse(accepted=False))


ALL_REQUESTS = [
    sd.UpdateConfigRequest(config_type=common_pb2.CUSTOM, config_key="k", config_value="v", apply_immediately=False),
    sd.GetConfigRequest(config_type=common_pb2.CUSTOM, config_key="k"),
    sd.CreateRealmRequest(realm_id=1, name="r", enabled=True, version=1, expires_at=0),
    sd.GetRealmRequest(realm_id=1),
    sd.UpdateRealmRequest(realm_id=1),
    sd.DeleteRealmRequest(realm_id=1),
    sd.ListRealmsRequest(),
    sd.GetNodeInfoRequest(),
    sd.ShutdownRequest(graceful=True),
]


async def test_wraps_any_implementation_on_a_raw_grpc_server(clock: FakeClock) -> None:
    """On a plain grpc.aio server: every RPC is verified first, delegated only when valid."""
    inner = CountingService()
    nonces = MemoryNonceStorage(clock=clock)
    server = grpc.aio.server()
    add_supervised_service(server, AuthService(inner, NODE_ID, SECRET_HEX, nonces, 0, clock=clock))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            good = NodeClient(channel, clock=clock)
            bad = NodeClient(channel, secret=SharedSecret.from_hex(OTHER_SECRET_HEX), clock=clock)
            for request in ALL_REQUESTS:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await bad.call(type(request).FromString(request.SerializePartialToString()))
                assert status_of(info)[0] == grpc.StatusCode.UNAUTHENTICATED
            assert inner.calls == 0
            for request in ALL_REQUESTS:
                await good.call(request)
            assert inner.calls == len(ALL_REQUESTS)
    finally:
        await server.stop(None)


def test_constructor_validation() -> None:
    """Bad secrets are ConfigErrors naming the field; an empty node id or secret list is refused."""
    nonces = MemoryNonceStorage()
    with pytest.raises(ConfigError, match="shared_secret"):
        AuthService(CountingService(), NODE_ID, "abc", nonces)
    with pytest.raises(ValueError, match="node_id"):
        AuthService(CountingService(), "", SECRET_HEX, nonces)
    with pytest.raises(ValueError, match="at least one"):
        AuthService(CountingService(), NODE_ID, [], nonces)
