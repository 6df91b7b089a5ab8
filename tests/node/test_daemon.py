"""NodeDaemon in-process: wiring from config, persistence, Shutdown RPC, client hook, start failures."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit._exceptions import ConfigError, SupervitError
from supervit._version import __version__
from supervit.config import NodeConfig, load_node_config
from supervit.metrics import Snapshot, StaticMetricsProvider
from supervit.node import ClientWiring, NodeDaemon, services_from_config
from supervit.protocol import common_pb2, supervised_pb2
from tests.conftest import SECRET_HEX
from tests.node._helpers import METRICS, NodeClient
from tests.nonce_files import companion_nonces
from tests.tls_certs import generate_tls_files

sd = supervised_pb2
NODE = "daemon-node"


def make_config(data_dir: Path, **supervisord: Any) -> NodeConfig:
    client: dict[str, Any] = {"node_id": NODE, "shared_secret": SECRET_HEX}
    if "endpoint" in supervisord:
        client["endpoint"] = supervisord.pop("endpoint")
    section: dict[str, Any] = {
        "ip": "127.0.0.1",
        "port": 0,
        "data_dir": str(data_dir),
        "node_name": "Daemon Node",
        "location_tag": "rack-7",
        "shutdown_grace_secs": 2,
        "services": [
            {"name": "turn-1", "type": "TURN", "port": 3478, "domain": "turn.example"},
            {"name": "sig-1", "type": "signaling", "state": "error"},
        ],
    }
    section.update(supervisord)
    supervisor = {"client": client, "supervisord": section, "metrics": {"listen": "127.0.0.1:0"}}
    return load_node_config(data={"supervisor": supervisor}, environ={})


class SlowMetrics:
    """A metrics provider whose snapshot takes ``delay`` seconds: makes GetNodeInfo an in-flight RPC."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def snapshot(self) -> Snapshot:
        await asyncio.sleep(self.delay)
        return Snapshot(METRICS, 3)


async def run_in_background(daemon: NodeDaemon) -> asyncio.Task[None]:
    ready = asyncio.Event()
    task = asyncio.create_task(daemon.run(on_ready=lambda _: ready.set(), handle_signals=False))
    await asyncio.wait_for(ready.wait(), 5)
    return task


async def test_serves_configured_identity_and_services(tmp_path: Path) -> None:
    """GetNodeInfo reflects the config: node id, node_name, location tag, version, advertised services."""
    daemon = NodeDaemon(make_config(tmp_path), metrics=StaticMetricsProvider(METRICS, 5))
    port = await daemon.start()
    try:
        assert daemon.address == f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(daemon.address) as channel:
            info = await NodeClient(channel, node_id=NODE).call(sd.GetNodeInfoRequest())
        assert (info.node_id, info.name, info.location_tag, info.version) == (
            NODE,
            "Daemon Node",
            "rack-7",
            __version__,
        )
        health = {s.name: (s.type, s.is_healthy) for s in info.services}
        assert health == {"turn-1": (common_pb2.TURN, True), "sig-1": (common_pb2.SIGNALING, False)}
        assert info.current_metrics == METRICS
    finally:
        await daemon.stop()
    assert (tmp_path / "actrix.db").exists() and (tmp_path / "nonce.db").exists()


async def test_realms_config_and_nonces_survive_restart(tmp_path: Path) -> None:
    """Realms, config values and consumed nonces persist across a stop/start of the daemon."""
    config = make_config(tmp_path)
    daemon = NodeDaemon(config, metrics=StaticMetricsProvider(METRICS, 5))
    await daemon.start()
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        client = NodeClient(channel, node_id=NODE)
        create = client.sign(sd.CreateRealmRequest(realm_id=9, name="keep", enabled=True, version=3, expires_at=0))
        assert (await client.call(create, sign=False)).success
        await client.call(
            sd.UpdateConfigRequest(
                config_type=common_pb2.CUSTOM, config_key="k", config_value="v", apply_immediately=False
            )
        )
        replay = client.sign(sd.GetNodeInfoRequest())
        await client.call(replay, sign=False)
    await daemon.stop()
    # The daemon wires actrix.db as the nonce store's companion: the realm and its nonce are one
    # commit (and the config value and its nonce another).
    nonces = companion_nonces(tmp_path)
    assert len(nonces) == 2 and nonces[0] == create.credential.nonce

    again = NodeDaemon(config, metrics=StaticMetricsProvider(METRICS, 5))
    await again.start()
    try:
        async with grpc.aio.insecure_channel(again.address) as channel:
            client = NodeClient(channel, node_id=NODE)
            assert (await client.call(sd.GetRealmRequest(realm_id=9))).realm.name == "keep"
            got = await client.call(sd.GetConfigRequest(config_type=common_pb2.CUSTOM, config_key="k"))
            assert got.config_value == "v"
            for copy in (replay, create):
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await client.call(copy, sign=False)
                assert info.value.details() == "nonce already used"
    finally:
        await again.stop()


async def test_graceful_shutdown_rpc_lets_in_flight_rpcs_finish(tmp_path: Path) -> None:
    """A graceful Shutdown: accepted, in-flight RPCs complete within the timeout, run() returns."""
    daemon = NodeDaemon(make_config(tmp_path), metrics=SlowMetrics(0.5))
    task = await run_in_background(daemon)
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        client = NodeClient(channel, node_id=NODE)
        slow = asyncio.create_task(client.call(sd.GetNodeInfoRequest()))
        await asyncio.sleep(0.1)
        response = await client.call(sd.ShutdownRequest(graceful=True, timeout_secs=3, reason="test"))
        assert response.accepted
        assert (await slow).success
        started = time.monotonic()
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 2
    assert daemon.stop_requested


async def test_immediate_shutdown_rpc_does_not_wait(tmp_path: Path) -> None:
    """An immediate Shutdown is answered, then the daemon stops without waiting for slow RPCs."""
    daemon = NodeDaemon(make_config(tmp_path), metrics=SlowMetrics(30))
    task = await run_in_background(daemon)
    async with grpc.aio.insecure_channel(daemon.address) as channel:
        client = NodeClient(channel, node_id=NODE)
        slow = asyncio.create_task(client.call(sd.GetNodeInfoRequest(), deadline=10))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        response = await client.call(sd.ShutdownRequest(graceful=False))
        assert response.accepted and abs(response.estimated_shutdown_time - time.time()) <= 2
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 2
        with pytest.raises(grpc.aio.AioRpcError):
            await slow


async def test_request_stop_keeps_the_shortest_grace(tmp_path: Path) -> None:
    """Several stop requests: the shortest grace wins; stop() is idempotent."""
    daemon = NodeDaemon(make_config(tmp_path), metrics=StaticMetricsProvider(METRICS, 5))
    task = await run_in_background(daemon)
    daemon.request_stop(5, "first")
    daemon.request_stop(0.5, "second")
    daemon.request_stop(9, "third")
    assert daemon._stop_grace == 0.5 and daemon.stop_reason == "first"
    await asyncio.wait_for(task, 5)
    await daemon.stop()


class FakeClient:
    def __init__(self, wiring: ClientWiring) -> None:
        self.wiring = wiring
        self.events: list[str] = []

    async def start_status_reporting(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")


async def test_client_factory_is_wired_with_the_bound_port(tmp_path: Path) -> None:
    """With an endpoint, the factory gets the client config (agent_addr = bound port), collector,
    metrics and realm version; its on_shutdown stops the daemon; the client is stopped with it."""
    made: list[FakeClient] = []

    def factory(wiring: ClientWiring) -> FakeClient:
        made.append(FakeClient(wiring))
        return made[-1]

    config = make_config(tmp_path, endpoint="http://127.0.0.1:9")
    daemon = NodeDaemon(config, metrics=StaticMetricsProvider(METRICS, 5), client_factory=factory)
    task = await run_in_background(daemon)
    (client,) = made
    assert client.events == ["start"]
    assert client.wiring.config.agent_addr == daemon.address
    assert client.wiring.config.node_id == NODE and client.wiring.config.name == "Daemon Node"
    assert {s.name for s in client.wiring.service_collector.services()} == {"turn-1", "sig-1"}
    assert await client.wiring.realm_version() == 0
    await client.wiring.on_shutdown("maintenance window")
    await asyncio.wait_for(task, 5)
    assert client.events == ["start", "stop"]


async def test_start_failure_closes_everything(tmp_path: Path) -> None:
    """A port already in use: start raises, and the stores it opened are closed again."""
    blocker = grpc.aio.server()
    port = blocker.add_insecure_port("127.0.0.1:0")
    await blocker.start()
    try:
        daemon = NodeDaemon(make_config(tmp_path, port=port), metrics=StaticMetricsProvider(METRICS, 5))
        try:
            with pytest.raises(SupervitError, match="cannot listen"):
                await daemon.start()
            assert daemon._db is None and daemon._nonces is None
        finally:
            await daemon.stop()
    finally:
        await blocker.stop(None)


async def test_tls_from_config(tmp_path: Path) -> None:
    """tls_cert/tls_key/tls_client_ca in the config give an mTLS server."""
    pki = generate_tls_files(tmp_path / "pki")
    config = make_config(
        tmp_path / "data",
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca_cert),
    )
    daemon = NodeDaemon(config, metrics=StaticMetricsProvider(METRICS, 5))
    await daemon.start()
    try:
        credentials = grpc.ssl_channel_credentials(
            pki.ca_cert.read_bytes(), pki.client_key.read_bytes(), pki.client_cert.read_bytes()
        )
        options = [("grpc.ssl_target_name_override", "localhost")]
        async with grpc.aio.secure_channel(daemon.address, credentials, options=options) as channel:
            assert (await NodeClient(channel, node_id=NODE).call(sd.ListRealmsRequest())).success
    finally:
        await daemon.stop()


def test_example_config_is_valid() -> None:
    """examples/node.toml loads and validates (it is what the README tells people to run)."""
    example = Path(__file__).resolve().parents[2] / "examples" / "node.toml"
    with pytest.raises(ConfigError) as info:  # the file carries no secret ...
        load_node_config(example, environ={})
    assert info.value.key == "supervisor.client.shared_secret"
    # ... the README's export provides it.
    config = load_node_config(example, environ={"SUPERVIT_SUPERVISOR__CLIENT__SHARED_SECRET": SECRET_HEX})
    assert config.node_id == "edge-1" and [s.name for s in services_from_config(config)] == ["turn-main", "stun-main"]
