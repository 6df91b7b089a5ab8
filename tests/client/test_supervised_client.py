"""SupervisedClient against a real node server (AuthService + Supervisord on a grpc.aio port 0)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit import AuthError, InvalidRequestError, NotFoundError, RpcError
from supervit.auth import SharedSecret
from supervit.client import (
    ConfigUpdate,
    ConfigValue,
    CredentialRejectedError,
    DeadlineExceededError,
    InvalidArgumentError,
    NodeInfo,
    NodeMetrics,
    PeerUnavailableError,
    RealmInfo,
    RealmPage,
    RefusedNotFoundError,
    RemoteNotFoundError,
    RequestRefusedError,
    ServiceHealth,
    ShutdownAck,
    SupervisedClient,
)
from supervit.protocol import common_pb2, supervised_pb2, supervised_pb2_grpc
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX
from tests.node._helpers import METRICS, NODE_ID, RunningNode, running_node

SECRET = SharedSecret.from_hex(SECRET_HEX)
OTHER = SharedSecret.from_hex(OTHER_SECRET_HEX)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    async with running_node(tmp_path / "data") as running:
        yield running


def client_for(node: RunningNode, secrets: Any = SECRET, **kwargs: Any) -> SupervisedClient:
    return SupervisedClient(node.target, NODE_ID, secrets, timeout=5, **kwargs)


async def test_realm_round_trip(node: RunningNode) -> None:
    async with client_for(node) as client:
        created = await client.create_realm(
            7,
            "seven",
            enabled=False,
            use_servers=[common_pb2.TURN, common_pb2.STUN],
            version=3,
            expires_at=4_000_000_000,
        )
        assert isinstance(created, RealmInfo)
        assert (created.realm_id, created.name, created.enabled, created.version, created.expires_at) == (
            7,
            "seven",
            False,
            3,
            4_000_000_000,
        )
        assert created.use_servers == (common_pb2.TURN, common_pb2.STUN)
        assert created.status == "Normal" and created.updated_at is None and created.created_at > 0
        assert created.message.realm_id == 7  # the protocol message stays reachable

        got = await client.get_realm(7)
        assert got == created

        updated = await client.update_realm(7, name="renamed", enabled=True)
        assert (updated.name, updated.enabled, updated.version) == ("renamed", True, 3)
        assert updated.updated_at is not None
        assert await client.get_realm(7) == updated

        await client.create_realm(8, "eight")
        first = await client.list_realms(page_size=1)
        assert isinstance(first, RealmPage)
        assert first.total_count == 2 and len(first.realms) == 1 and first.next_page_token
        second = await client.list_realms(page_size=1, page_token=first.next_page_token)
        assert second.next_page_token is None
        assert {r.realm_id for r in (*first.realms, *second.realms)} == {7, 8}

        await client.delete_realm(7)
        assert [r.realm_id for r in (await client.list_realms()).realms] == [8]
    assert await node.supervisord.realm_store.get(7) is None


async def test_missing_realm_is_not_found(node: RunningNode) -> None:
    async with client_for(node) as client:
        for call in (client.get_realm(404), client.update_realm(404, name="x"), client.delete_realm(404)):
            with pytest.raises(RefusedNotFoundError) as caught:
                await call
            error = caught.value
            assert isinstance(error, NotFoundError) and isinstance(error, RequestRefusedError)
            assert (error.kind, error.key, error.code) == ("realm", 404, grpc.StatusCode.NOT_FOUND)
            assert error.details == "Realm 404 not found"


async def test_create_existing_realm_is_refused(node: RunningNode) -> None:
    async with client_for(node) as client:
        await client.create_realm(1, "one")
        with pytest.raises(RequestRefusedError) as caught:
            await client.create_realm(1, "again")
    assert not isinstance(caught.value, NotFoundError)
    assert caught.value.method == "CreateRealm" and caught.value.details == "Realm 1 already exists"
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_config_round_trip(node: RunningNode) -> None:
    async with client_for(node) as client:
        with pytest.raises(RefusedNotFoundError) as caught:
            await client.get_config(common_pb2.CUSTOM, "colour")
        assert (caught.value.kind, caught.value.key) == ("config", (common_pb2.CUSTOM, "colour"))

        first = await client.update_config(common_pb2.CUSTOM, "colour", "blue", apply_immediately=False)
        assert isinstance(first, ConfigUpdate) and first.old_value is None
        second = await client.update_config(common_pb2.CUSTOM, "colour", "green")
        assert second.old_value == "blue"
        value = await client.get_config(common_pb2.CUSTOM, "colour")
        assert isinstance(value, ConfigValue)
        assert (value.config_type, value.key, value.value) == (common_pb2.CUSTOM, "colour", "green")

        with pytest.raises(RequestRefusedError) as refused:
            await client.update_config(common_pb2.LOG_LEVEL, "root", "loudest")
        assert not isinstance(refused.value, NotFoundError)
        assert refused.value.details.startswith("invalid LOG_LEVEL value")


async def test_node_info(node: RunningNode) -> None:
    async with client_for(node) as client:
        info = await client.node_info()
    assert isinstance(info, NodeInfo)
    assert (info.node_id, info.name, info.version, info.location_tag) == (NODE_ID, "Test Node", "9.9.9", "lab-1")
    assert info.uptime_secs >= 0
    assert info.metrics == NodeMetrics.from_message(METRICS)
    assert info.metrics is not None and info.metrics.cpu_usage_percent == 12.5
    assert {s.name for s in info.services} == {"turn-main", "stun-main"}
    turn = next(s for s in info.services if s.name == "turn-main")
    assert isinstance(turn, ServiceHealth) and turn.type == common_pb2.TURN and turn.domain == "turn.example.org"
    assert info.message.node_id == NODE_ID


async def test_shutdown(node: RunningNode) -> None:
    async with client_for(node) as client:
        ack = await client.shutdown(timeout_secs=3, reason="maintenance")
        assert isinstance(ack, ShutdownAck) and ack.estimated_shutdown_time is not None
        await client.shutdown(graceful=False)
    assert node.shutdowns == [(True, 3, "maintenance"), (False, 0, None)]


async def test_bad_argument_is_invalid_argument(node: RunningNode) -> None:
    async with client_for(node) as client:
        with pytest.raises(InvalidArgumentError) as caught:
            await client.shutdown(timeout_secs=-1)
    assert isinstance(caught.value, InvalidRequestError) and isinstance(caught.value, RpcError)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "timeout_secs" in caught.value.details
    assert node.shutdowns == []


async def test_wrong_key_is_a_credential_rejection(node: RunningNode) -> None:
    async with client_for(node, OTHER) as client:
        with pytest.raises(CredentialRejectedError) as caught:
            await client.create_realm(1, "one")
    assert isinstance(caught.value, AuthError)
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED and caught.value.method == "CreateRealm"
    assert OTHER_SECRET_HEX not in str(caught.value)
    assert await node.supervisord.realm_store.get(1) is None


@pytest.mark.parametrize("order", ["old-first", "new-first"])
async def test_rotation_tries_the_next_key_and_remembers_it(tmp_path: Path, order: str) -> None:
    """The node holds only the new key: the client gets through with either order and keeps the winner first."""
    rotated: list[SharedSecret] = []
    secrets = [OTHER, SECRET] if order == "old-first" else [SECRET, OTHER]
    async with (
        running_node(tmp_path / "data", secret=SECRET_HEX) as node,
        client_for(node, secrets, on_rotate=rotated.append) as client,
    ):
        await client.create_realm(1, "one")
        assert client.secret == SECRET
        await client.get_realm(1)
        await client.list_realms()
    assert rotated == ([SECRET] if order == "old-first" else [])


async def test_rotation_against_a_node_holding_both_keys(tmp_path: Path) -> None:
    async with (
        running_node(tmp_path / "data", secret=[SECRET_HEX, OTHER_SECRET_HEX]) as node,
        client_for(node, OTHER) as client,
    ):
        assert (await client.create_realm(1, "one")).realm_id == 1


async def test_every_key_wrong_still_fails(node: RunningNode) -> None:
    third = SharedSecret.from_hex("ab" * 32)
    async with client_for(node, [OTHER, third]) as client:
        with pytest.raises(CredentialRejectedError):
            await client.node_info()
        assert client.secret == OTHER


def test_no_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        SupervisedClient("127.0.0.1:1", NODE_ID, [])


async def test_unreachable_node_is_unavailable(unused_tcp_port_addr: str) -> None:
    async with SupervisedClient(unused_tcp_port_addr, NODE_ID, SECRET, timeout=5) as client:
        with pytest.raises(PeerUnavailableError) as caught:
            await client.node_info()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


class _StandInNode(supervised_pb2_grpc.SupervisedServiceServicer):
    """A SupervisedService peer other than supervit's node: answers NOT_FOUND, or never answers."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def GetRealm(self, request: Any, context: Any) -> supervised_pb2.GetRealmResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no realm {request.realm_id}")
        raise AssertionError("unreachable")

    async def GetNodeInfo(self, request: Any, context: Any) -> supervised_pb2.GetNodeInfoResponse:
        await self.release.wait()
        raise AssertionError("released only at teardown")


@contextlib.asynccontextmanager
async def stand_in_node() -> AsyncIterator[tuple[str, _StandInNode]]:
    servicer = _StandInNode()
    server = grpc.aio.server()
    supervised_pb2_grpc.add_SupervisedServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        servicer.release.set()
        await server.stop(None)


async def test_not_found_status_is_not_found_error() -> None:
    async with stand_in_node() as (address, _), SupervisedClient(address, NODE_ID, SECRET, timeout=5) as client:
        with pytest.raises(RemoteNotFoundError) as caught:
            await client.get_realm(9)
    error = caught.value
    assert isinstance(error, NotFoundError) and not isinstance(error, RequestRefusedError)
    assert (error.kind, error.key, error.details) == ("realm", 9, "no realm 9")


async def test_deadline_is_deadline_exceeded() -> None:
    async with stand_in_node() as (address, _), SupervisedClient(address, NODE_ID, SECRET, timeout=5) as client:
        with pytest.raises(DeadlineExceededError) as caught:
            await client.node_info(deadline=0.2)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and caught.value.method == "GetNodeInfo"


async def test_a_passed_channel_is_left_open(node: RunningNode) -> None:
    async with SupervisedClient(node.target, NODE_ID, SECRET, channel=node.channel) as client:
        await client.create_realm(1, "one")
    # The caller's channel still works after the client stopped.
    assert (await node.client.call(supervised_pb2.GetRealmRequest(realm_id=1))).success


def test_views_keep_optional_fields_apart_from_defaults() -> None:
    message = common_pb2.RealmInfo(
        realm_id=1, name="a", enabled=True, created_at=10, version=2, expires_at=0, status="Normal"
    )
    bare = RealmInfo.from_message(message)
    assert bare.updated_at is None and bare.use_servers == ()
    message.updated_at = 0
    assert RealmInfo.from_message(message).updated_at == 0
    assert RealmInfo.from_message(message) == bare.__class__(**{**_fields(bare), "updated_at": 0})
    with pytest.raises(AttributeError):
        bare.name = "b"  # type: ignore[misc]
    metrics = NodeMetrics.from_message(METRICS)
    assert metrics.load_average_5m is None and metrics.load_average_15m is None
    with_5m = common_pb2.SystemMetrics()
    with_5m.CopyFrom(METRICS)
    with_5m.load_average_5m = 0.0
    assert NodeMetrics.from_message(with_5m).load_average_5m == 0.0
    page = RealmPage.from_message(supervised_pb2.ListRealmsResponse(success=True, total_count=0, next_page_token=""))
    assert page.next_page_token is None and page.realms == ()
    ack = ShutdownAck.from_message(supervised_pb2.ShutdownResponse(accepted=True))
    assert ack.estimated_shutdown_time is None


def _fields(view: RealmInfo) -> dict[str, Any]:
    return {name: getattr(view, name) for name in view.__dataclass_fields__}
