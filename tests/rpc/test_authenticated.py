"""The one authenticated-request layer (RequestAuthenticator) as the node, supervisor and admin services use it.

Every case goes through real grpc.aio servers on 127.0.0.1: a node (AuthService over Supervisord and
SQLite), a started Supervisor (SupervisorService and SupervisorAdmin on their SQLite store), and a
bare servicer built on the layer alone.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit._exceptions import NonceStorageError
from supervit.auth import CredentialVerifier, MemoryNonceStorage, NonceStorage, SharedSecret, Signer, request_payload
from supervit.node import SUPERVISED_SERVICE, AuthService
from supervit.protocol import (
    supervised_pb2,
    supervised_pb2_grpc,
    supervisor_pb2,
    supervit_admin_pb2,
    supervit_admin_pb2_grpc,
)
from supervit.rpc import RefusalLog, RequestAuthenticator, authenticated
from supervit.supervisor import SERVER_TIME_METADATA_KEY, Supervisor, admin_payload
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX, FakeClock
from tests.node._helpers import NODE_ID, RunningNode, running_node
from tests.supervisor.conftest import ADMIN_HEX, NodeSim, make_config

sd = supervised_pb2
Ctx = grpc.aio.ServicerContext[Any, Any]
INFO = sd.GetNodeInfoResponse(success=True, node_id=NODE_ID, name="n", version="1", location_tag="t", uptime_secs=1)


@dataclass
class Target:
    """One authenticated RPC of one service: how to sign a request for it and how to send it."""

    label: str
    logger: str
    rpc: str
    genuine: SharedSecret
    make: Callable[[SharedSecret, str | None], Any]
    send: Callable[[Any], Awaitable[Any]]


@dataclass
class Fleet:
    node: RunningNode
    supervisor: Supervisor
    channels: list[grpc.aio.Channel]

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(address)
        self.channels.append(channel)
        return channel


@contextlib.asynccontextmanager
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    supervisor = Supervisor(make_config(tmp_path))
    await supervisor.start()
    try:
        async with running_node(tmp_path / "node") as node:
            found = Fleet(node, supervisor, [])
            try:
                yield found
            finally:
                for channel in found.channels:
                    await channel.close(None)
    finally:
        await supervisor.stop(0)


def _node_target(fleet: Fleet) -> Target:
    stub = supervised_pb2_grpc.SupervisedServiceStub(fleet.node.channel)

    def make(secret: SharedSecret, nonce: str | None) -> Any:
        request = sd.GetNodeInfoRequest()
        request.credential.CopyFrom(Signer(secret).credential(request_payload(request, NODE_ID), nonce=nonce))
        return request

    return Target(
        "node", "supervit.node._auth_service", "GetNodeInfo", SharedSecret.from_hex(SECRET_HEX), make, stub.GetNodeInfo
    )


def _supervisor_targets(fleet: Fleet) -> list[Target]:
    """RegisterNode (the verifier's nonce store), Report (the ingest log) and HealthCheck (the ingest window)."""
    channel = fleet.channel(fleet.supervisor.address)
    genuine = SharedSecret.from_hex(SECRET_HEX)
    node = NodeSim(channel, "n1")

    def signed(request: Any, secret: SharedSecret, nonce: str | None) -> Any:
        request.credential.CopyFrom(Signer(secret).credential(request_payload(request), nonce=nonce))
        return request

    def register(secret: SharedSecret, nonce: str | None) -> Any:
        request = node.register_request()
        request.ClearField("credential")
        return signed(request, secret, nonce)

    def report(secret: SharedSecret, nonce: str | None) -> Any:
        request = node.report_request()
        request.ClearField("credential")
        return signed(request, secret, nonce)

    def health(secret: SharedSecret, nonce: str | None) -> Any:
        return signed(supervisor_pb2.HealthCheckRequest(node_id="n1"), secret, nonce)

    log = "supervit.supervisor"
    return [
        Target("supervisor", log, "RegisterNode", genuine, register, node.stub.RegisterNode),
        Target("supervisor", log, "Report", genuine, report, node.stub.Report),
        Target("supervisor", log, "HealthCheck", genuine, health, node.stub.HealthCheck),
    ]


def _admin_target(fleet: Fleet) -> Target:
    assert fleet.supervisor.admin_address is not None
    stub = supervit_admin_pb2_grpc.SupervisorAdminStub(fleet.channel(fleet.supervisor.admin_address))

    def make(secret: SharedSecret, nonce: str | None) -> Any:
        request = supervit_admin_pb2.ListCatalogRequest()
        request.credential.CopyFrom(Signer(secret).credential(admin_payload(request), nonce=nonce))
        return request

    return Target(
        "admin", "supervit.supervisor.admin", "ListCatalog", SharedSecret.from_hex(ADMIN_HEX), make, stub.ListCatalog
    )


def targets(fleet: Fleet) -> list[Target]:
    return [_node_target(fleet), *_supervisor_targets(fleet), _admin_target(fleet)]


async def refusal(target: Target, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await target.send(request)
    return info.value.code(), info.value.details() or ""


async def test_a_replay_is_refused_by_every_service_through_the_same_layer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Node, supervisor (all three RPCs, whatever their nonce store) and admin: the second use of a
    credential is UNAUTHENTICATED "nonce already used", logged by the shared layer with its fields."""
    async with fleet(tmp_path) as found:
        with caplog.at_level(logging.INFO):
            for target in targets(found):
                request = target.make(target.genuine, None)
                await target.send(request)
                assert await refusal(target, request) == (
                    grpc.StatusCode.UNAUTHENTICATED,
                    "nonce already used",
                ), target.rpc
                logged = [
                    r
                    for r in caplog.records
                    if r.name == target.logger and getattr(r, "rpc", None) == target.rpc and "refused" in r.getMessage()
                ]
                assert [getattr(r, "reason", None) for r in logged] == ["replay"], target.rpc
                assert all(request.credential.signature not in r.getMessage() for r in caplog.records)


async def test_a_wrong_key_is_refused_everywhere_and_burns_no_nonce(tmp_path: Path) -> None:
    """Signed with another key: "invalid signature"; the genuine holder can still use that nonce,
    since the layer checks (window, signature, body MAC) before anything is consumed."""
    other = SharedSecret.from_hex(OTHER_SECRET_HEX)
    async with fleet(tmp_path) as found:
        for target in targets(found):
            forged = target.make(other, None)
            assert await refusal(target, forged) == (grpc.StatusCode.UNAUTHENTICATED, "invalid signature"), target.rpc
            genuine = target.make(target.genuine, forged.credential.nonce)
            await target.send(genuine)  # accepted: the forged request consumed nothing
            assert await refusal(target, genuine) == (grpc.StatusCode.UNAUTHENTICATED, "nonce already used")


async def test_supervisor_refusals_carry_server_time_and_node_and_admin_ones_do_not(tmp_path: Path) -> None:
    """Stamping is what each service supplies: only the supervisor adds x-server-time to refusals."""
    other = SharedSecret.from_hex(OTHER_SECRET_HEX)
    async with fleet(tmp_path) as found:
        for target in targets(found):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await target.send(target.make(other, None))
            keys = {key for key, _ in info.value.trailing_metadata() or ()}
            assert (SERVER_TIME_METADATA_KEY in keys) == (target.label == "supervisor"), target.rpc


def test_auth_service_guards_every_rpc_of_the_service() -> None:
    """AuthService's own table has an authenticated delegate for each SupervisedService method."""
    for method in SUPERVISED_SERVICE.methods:
        own = vars(AuthService).get(method.name)
        assert own is not None and own is not getattr(supervised_pb2_grpc.SupervisedServiceServicer, method.name)
        assert own.__wrapped__.__name__ == method.name  # authenticated(...) around the delegate


class Counting(supervised_pb2_grpc.SupervisedServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def GetNodeInfo(self, request: Any, context: Any) -> sd.GetNodeInfoResponse:
        self.calls += 1
        return INFO


@contextlib.asynccontextmanager
async def served(register: Callable[[grpc.aio.Server], None]) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server()
    register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


async def test_auth_service_authenticates_under_the_generated_registration_too(clock: FakeClock) -> None:
    """The check lives in the servicer, not in supervit's handler: grpcio's own registration is guarded as well."""
    inner = Counting()
    service = AuthService(inner, NODE_ID, SECRET_HEX, MemoryNonceStorage(clock=clock), clock=clock)
    async with served(
        lambda server: supervised_pb2_grpc.add_SupervisedServiceServicer_to_server(service, server)
    ) as ch:
        stub = supervised_pb2_grpc.SupervisedServiceStub(ch)
        request = sd.GetNodeInfoRequest()
        payload = request_payload(request, NODE_ID)
        request.credential.CopyFrom(Signer(SharedSecret.from_hex(OTHER_SECRET_HEX), clock=clock).credential(payload))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetNodeInfo(request)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and inner.calls == 0
        request.credential.CopyFrom(Signer(SharedSecret.from_hex(SECRET_HEX), clock=clock).credential(payload))
        assert (await stub.GetNodeInfo(request)).success and inner.calls == 1


class Failing(NonceStorage):
    async def consume(self, nonce: str, expires_at: float) -> bool:
        raise NonceStorageError("disk full")


class OnTheLayer:
    """A servicer built on the layer alone: what a new authenticated service supplies."""

    def __init__(self, nonces: NonceStorage, clock: FakeClock) -> None:
        verifier = CredentialVerifier(SharedSecret.from_hex(SECRET_HEX), nonces, clock=clock)
        self.stamped = 0
        self.calls = 0
        self.authenticator = RequestAuthenticator(
            verifier,
            lambda request: request_payload(request, NODE_ID),
            refusals=RefusalLog(logging.getLogger("tests.rpc")),
            stamp=self._stamp,
        )

    def _stamp(self, context: Ctx) -> None:
        self.stamped += 1
        context.set_trailing_metadata((("x-stamped", "yes"),))

    @authenticated
    async def GetNodeInfo(self, request: sd.GetNodeInfoRequest, context: Ctx) -> sd.GetNodeInfoResponse:
        self.calls += 1
        return INFO

    def register(self, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            self.GetNodeInfo,
            request_deserializer=sd.GetNodeInfoRequest.FromString,
            response_serializer=sd.GetNodeInfoResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SUPERVISED_SERVICE.full_name, {"GetNodeInfo": handler}),)
        )


def _signed_info(clock: FakeClock, secret_hex: str = SECRET_HEX) -> sd.GetNodeInfoRequest:
    request = sd.GetNodeInfoRequest()
    payload = request_payload(request, NODE_ID)
    request.credential.CopyFrom(Signer(SharedSecret.from_hex(secret_hex), clock=clock).credential(payload))
    return request


@contextlib.contextmanager
def _expect(code: grpc.StatusCode, details: str) -> Iterator[pytest.ExceptionInfo[grpc.aio.AioRpcError]]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        yield info
    assert (info.value.code(), info.value.details()) == (code, details)


async def test_a_nonce_store_failure_is_internal_and_stamped_never_an_accept(clock: FakeClock) -> None:
    servicer = OnTheLayer(Failing(), clock)
    async with served(servicer.register) as channel:
        stub = supervised_pb2_grpc.SupervisedServiceStub(channel)
        with _expect(grpc.StatusCode.INTERNAL, "nonce storage failure") as info:
            await stub.GetNodeInfo(_signed_info(clock))
        assert ("x-stamped", "yes") in tuple(info.value.trailing_metadata() or ())
    assert servicer.calls == 0 and servicer.stamped == 1


async def test_the_layer_refuses_in_the_contract_order(clock: FakeClock) -> None:
    """Stale before signature; a wrong key before the nonce; the genuine credential once."""
    nonces = MemoryNonceStorage(clock=clock)
    servicer = OnTheLayer(nonces, clock)
    async with served(servicer.register) as channel:
        stub = supervised_pb2_grpc.SupervisedServiceStub(channel)
        stale_and_forged = _signed_info(clock, OTHER_SECRET_HEX)
        clock.advance(301)
        with _expect(grpc.StatusCode.UNAUTHENTICATED, "timestamp out of range"):
            await stub.GetNodeInfo(stale_and_forged)
        with _expect(grpc.StatusCode.UNAUTHENTICATED, "invalid signature"):
            await stub.GetNodeInfo(_signed_info(clock, OTHER_SECRET_HEX))
        assert len(nonces) == 0
        good = _signed_info(clock)
        assert (await stub.GetNodeInfo(good)).success
        with _expect(grpc.StatusCode.UNAUTHENTICATED, "nonce already used"):
            await stub.GetNodeInfo(good)
    assert servicer.calls == 1 and servicer.stamped == 3
