"""Test plumbing for the node: a signing SupervisedService client and an in-process node server."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from supervit.auth import MemoryNonceStorage, NonceStorage, SharedSecret, Signer, SqliteNonceStorage, request_payload
from supervit.metrics import StaticMetricsProvider
from supervit.node import AuthService, ServiceCollector, ServiceInfo, ServiceState, Supervisord, add_supervised_service
from supervit.protocol import common_pb2, supervised_pb2_grpc
from supervit.rpc import RpcServer, ServerTLS
from supervit.storage import ConfigStore, Database, RealmStore, open_node_database
from tests.conftest import SECRET_HEX

NODE_ID = "node-test"
SERVICE_PATH = "/supervisor.v1.SupervisedService/"

METRICS = common_pb2.SystemMetrics(
    cpu_usage_percent=12.5,
    memory_used_bytes=1_000,
    memory_total_bytes=4_000,
    memory_usage_percent=25.0,
    network_rx_bytes=10,
    network_tx_bytes=20,
    disk_used_bytes=300,
    disk_total_bytes=900,
    load_average_1m=0.5,
)


class NodeClient:
    """Calls a node's SupervisedService, signing each request for ``node_id`` with ``secret``."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        node_id: str = NODE_ID,
        secret: SharedSecret | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.channel = channel
        self.node_id = node_id
        self.signer = Signer(secret or SharedSecret.from_hex(SECRET_HEX), clock=clock)
        self.stub = supervised_pb2_grpc.SupervisedServiceStub(channel)

    def sign(self, request: Any, *, timestamp: int | None = None, nonce: str | None = None) -> Any:
        """Set ``request.credential`` for this client's node id and secret; returns the request."""
        payload = request_payload(request, self.node_id)
        request.credential.CopyFrom(self.signer.credential(payload, timestamp=timestamp, nonce=nonce))
        return request

    async def call(self, request: Any, *, sign: bool = True, deadline: float = 5, **cred: Any) -> Any:
        """Sign (unless ``sign=False``) and send ``request`` to the method named after its type.

        ``deadline`` is the gRPC deadline in seconds; ``cred`` (timestamp, nonce) fixes the credential.
        """
        if sign:
            self.sign(request, **cred)
        method = getattr(self.stub, type(request).__name__.removesuffix("Request"))
        return await method(request, timeout=deadline)

    async def raw(self, method: str, data: bytes, *, deadline: float = 5) -> bytes:
        """Send arbitrary bytes to ``method`` (e.g. "CreateRealm") and return the raw response."""
        call = self.channel.unary_unary(SERVICE_PATH + method, None, None)  # bytes in, bytes out
        result: bytes = await call(data, timeout=deadline)
        return result


@dataclass
class RunningNode:
    """A Supervisord behind AuthService on a real grpc.aio server on 127.0.0.1."""

    server: RpcServer
    port: int
    channel: grpc.aio.Channel
    client: NodeClient
    supervisord: Supervisord
    collector: ServiceCollector
    db: Database
    nonces: NonceStorage
    metrics: StaticMetricsProvider
    shutdowns: list[tuple[bool, int, str | None]] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def default_services() -> list[ServiceInfo]:
    return [
        ServiceInfo("turn-main", common_pb2.TURN, domain="turn.example.org", port=3478, state=ServiceState.RUNNING),
        ServiceInfo("stun-main", common_pb2.STUN, port=3479, state=ServiceState.HEALTHY),
    ]


@contextlib.asynccontextmanager
async def running_node(
    data_dir: Path,
    *,
    clock: Callable[[], float] = time.time,
    max_message_bytes: int = 64 * 1024,
    tls: ServerTLS | None = None,
    secret: str | SharedSecret | list[str | SharedSecret] = SECRET_HEX,
    nonces: NonceStorage | None = None,
    services: list[ServiceInfo] | None = None,
    sqlite_nonces: bool = False,
) -> AsyncIterator[RunningNode]:
    """Start a node server on port 0 with real SQLite in ``data_dir``; close everything on exit.

    ``sqlite_nonces``: nonces in ``data_dir/nonce.db`` with actrix.db as companion, as the daemon
    (write RPCs commit their nonce with their write); else ``nonces`` or an in-memory store.
    """
    db = await open_node_database(data_dir)
    if sqlite_nonces:
        nonces = await SqliteNonceStorage.open(data_dir, clock=clock, companion=db)
    nonce_store = nonces or MemoryNonceStorage(clock=clock)
    collector = ServiceCollector(default_services() if services is None else services)
    metrics = StaticMetricsProvider(METRICS, 4)
    supervisord = Supervisord(
        NODE_ID,
        "Test Node",
        "lab-1",
        "9.9.9",
        collector,
        realm_store=RealmStore(db, clock=clock),
        config_store=ConfigStore(db, clock=clock),
        data_dir=data_dir,
        clock=clock,
        default_shutdown_timeout_secs=7,
    ).with_metrics_provider(metrics)
    server = RpcServer(max_message_bytes=max_message_bytes, tls=tls)
    add_supervised_service(server, AuthService(supervisord, NODE_ID, secret, nonce_store, 300, clock=clock))
    try:
        port = await server.start("127.0.0.1:0")
        async with contextlib.AsyncExitStack() as stack:
            chan = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            stack.push_async_callback(chan.close, None)
            node = RunningNode(
                server, port, chan, NodeClient(chan, clock=clock), supervisord, collector, db, nonce_store, metrics
            )

            def record(graceful: bool, timeout: int, reason: str | None) -> None:
                node.shutdowns.append((graceful, timeout, reason))

            supervisord.with_shutdown_handler(record)
            yield node
    finally:
        await server.stop(None)
        await nonce_store.close()
        await db.close()


def status_of(exc_info: Any) -> tuple[grpc.StatusCode, str]:
    """(code, details) of a caught grpc.aio.AioRpcError."""
    error: grpc.aio.AioRpcError = exc_info.value
    return error.code(), error.details() or ""


def message_equal(a: Message, b: Message) -> bool:
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)
