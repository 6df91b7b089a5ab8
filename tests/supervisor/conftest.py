"""Supervisor test helpers: configs, a started in-process supervisor, and a scripted node."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.auth import SharedSecret, Signer, request_payload
from supervit.protocol import supervisor_pb2, supervisor_pb2_grpc
from supervit.supervisor import AdminClient, Supervisor, SupervisorConfig, load_supervisor_config
from tests.conftest import SECRET_HEX, FakeClock

ADMIN_HEX = "ad" * 32
NODE_A_HEX = "a1" * 32
NODE_A_NEW_HEX = "a2" * 32


def config_data(tmp_path: Path, **tables: dict[str, Any]) -> dict[str, Any]:
    """A supervisor config on loopback port 0 with short intervals; ``tables`` replace/extend sections."""
    data: dict[str, Any] = {
        "server": {"listen": "127.0.0.1:0", "data_dir": str(tmp_path / "sup"), "shutdown_grace_secs": 0},
        "fleet": {"shared_secret": SECRET_HEX, "report_interval_secs": 2, "heartbeat_interval_secs": 3},
        "admin": {"listen": "127.0.0.1:0", "secret": ADMIN_HEX},
        "push": {"timeout_secs": 2, "backoff_base_secs": 0.05, "backoff_cap_secs": 0.2},
        # Never the default port: tests run many daemons at once on one machine.
        "metrics": {"listen": "127.0.0.1:0"},
    }
    for name, table in tables.items():
        data[name] = {**data.get(name, {}), **table} if isinstance(data.get(name), dict) else table
    return data


def make_config(tmp_path: Path, **tables: dict[str, Any]) -> SupervisorConfig:
    return load_supervisor_config(data=config_data(tmp_path, **tables), environ={})


class NodeSim:
    """A scripted node speaking SupervisorService directly (no SupervitClient)."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        node_id: str,
        secret: SharedSecret | str = SECRET_HEX,
        *,
        agent_addr: str = "127.0.0.1:1",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.stub = supervisor_pb2_grpc.SupervisorServiceStub(channel)
        self.node_id = node_id
        self.secret = secret if isinstance(secret, SharedSecret) else SharedSecret.from_hex(secret)
        self.signer = Signer(self.secret) if clock is None else Signer(self.secret, clock=clock)
        self.agent_addr = agent_addr

    def register_request(self, **fields: Any) -> supervisor_pb2.RegisterNodeRequest:
        values: dict[str, Any] = {
            "node_id": self.node_id,
            "name": f"{self.node_id} name",
            "location_tag": "lab",
            "version": "1.2.3",
            "agent_addr": self.agent_addr,
            "location": "rack 4",
            "service_tags": ["edge", "eu"],
            "power_reserve_level_init": 4,
            "services": [
                supervisor_pb2.ServiceAdvertisement(
                    name="turn", type=2, domain_name="turn.example", port_info="3478", status=1, tags=["udp"]
                )
            ],
        }
        values.update(fields)
        request = supervisor_pb2.RegisterNodeRequest(**values)
        request.credential.CopyFrom(self.signer.credential(request_payload(request)))
        return request

    async def register(self, **fields: Any) -> supervisor_pb2.RegisterNodeResponse:
        response: supervisor_pb2.RegisterNodeResponse = await self.stub.RegisterNode(self.register_request(**fields))
        return response

    def report_request(
        self, *, realm_sync_version: int = 0, power: int = 3, timestamp: int | None = None
    ) -> supervisor_pb2.ReportRequest:
        ts = self.signer.now() if timestamp is None else timestamp
        request = supervisor_pb2.ReportRequest(
            node_id=self.node_id,
            timestamp=ts,
            location_tag="lab",
            version="1.2.3",
            name=f"{self.node_id} name",
            power_reserve_level=power,
            realm_sync_version=realm_sync_version,
        )
        request.metrics.cpu_usage_percent = 12.5
        request.metrics.memory_used_bytes = 1
        request.metrics.memory_total_bytes = 2
        request.metrics.memory_usage_percent = 50.0
        request.metrics.network_rx_bytes = 3
        request.metrics.network_tx_bytes = 4
        request.metrics.disk_used_bytes = 5
        request.metrics.disk_total_bytes = 6
        request.metrics.load_average_1m = 0.5
        request.services.add(
            name="turn",
            type=2,
            is_healthy=True,
            active_connections=7,
            total_requests=8,
            failed_requests=0,
            average_latency_ms=1.5,
        )
        request.credential.CopyFrom(self.signer.credential(request_payload(request), timestamp=ts))
        return request

    async def report(self, **kwargs: Any) -> supervisor_pb2.ReportResponse:
        response: supervisor_pb2.ReportResponse = await self.stub.Report(self.report_request(**kwargs))
        return response

    async def health(self) -> supervisor_pb2.HealthCheckResponse:
        request = supervisor_pb2.HealthCheckRequest(node_id=self.node_id)
        request.credential.CopyFrom(self.signer.credential(request_payload(request)))
        response: supervisor_pb2.HealthCheckResponse = await self.stub.HealthCheck(request)
        return response


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., Any]]:
    """``await started(config, clock=None)`` → a started Supervisor, stopped after the test."""
    running: list[Supervisor] = []

    async def start(config: SupervisorConfig, clock: FakeClock | None = None) -> Supervisor:
        supervisor = Supervisor(config) if clock is None else Supervisor(config, clock=clock)
        await supervisor.start()
        running.append(supervisor)
        return supervisor

    yield start
    for supervisor in running:
        await supervisor.stop(0)


@pytest.fixture
async def channel_to() -> AsyncIterator[Callable[[str], grpc.aio.Channel]]:
    """``channel_to("host:port")`` → an insecure channel closed after the test."""
    channels: list[grpc.aio.Channel] = []

    def make(address: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(address)
        channels.append(channel)
        return channel

    yield make
    for channel in channels:
        await channel.close(None)


@pytest.fixture
async def admin_to() -> AsyncIterator[Callable[..., AdminClient]]:
    """``admin_to(address, secret_hex=ADMIN_HEX)`` → an AdminClient closed after the test."""
    clients: list[AdminClient] = []

    def make(address: str, secret_hex: str = ADMIN_HEX) -> AdminClient:
        client = AdminClient(address, SharedSecret.from_hex(secret_hex))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
