"""Catalog pushes to a real in-process node (NodeDaemon: Supervisord behind AuthService) over grpc.aio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.config import load_node_config
from supervit.metrics import StaticMetricsProvider
from supervit.node import NodeDaemon
from supervit.protocol import common_pb2
from supervit.supervisor import PushResult, Supervisor
from tests.conftest import SECRET_HEX
from tests.supervisor.conftest import NODE_A_HEX, NODE_A_NEW_HEX, NodeSim, make_config

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]
NodeFactory = Callable[..., Any]

METRICS = common_pb2.SystemMetrics(
    cpu_usage_percent=1.0,
    memory_used_bytes=1,
    memory_total_bytes=2,
    memory_usage_percent=50.0,
    network_rx_bytes=0,
    network_tx_bytes=0,
    disk_used_bytes=1,
    disk_total_bytes=2,
    load_average_1m=0.1,
)


@pytest.fixture
async def node_server(tmp_path: Path) -> AsyncIterator[NodeFactory]:
    """``await node_server(node_id, secret_hex, name)`` → a started serve-only NodeDaemon."""
    daemons: list[NodeDaemon] = []

    async def start(node_id: str, secret_hex: str = SECRET_HEX, name: str | None = None) -> NodeDaemon:
        data = {
            "supervisor": {
                "metrics": {"listen": "127.0.0.1:0"},
                "client": {"node_id": node_id, "shared_secret": secret_hex},
                "supervisord": {
                    "ip": "127.0.0.1",
                    "port": 0,
                    "data_dir": str(tmp_path / (name or node_id)),
                    "shutdown_grace_secs": 0,
                },
            }
        }
        daemon = NodeDaemon(load_node_config(data=data, environ={}), metrics=StaticMetricsProvider(METRICS, 3))
        await daemon.start()
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        await daemon.stop(0)


async def node_realms(daemon: NodeDaemon) -> dict[int, tuple[str, bool, int]]:
    assert daemon.supervisord is not None
    page = await daemon.supervisord.realm_store.list_page()
    return {r.realm_id: (r.name, r.enabled, r.version) for r in page.realms}


async def report_and_wait(sup: Supervisor, node: NodeSim, daemon: NodeDaemon) -> int:
    """Report the node's current realm version, wait for the push it triggers, return the new version."""
    assert daemon.supervisord is not None
    version = await daemon.supervisord.realm_store.max_realm_version()
    await node.report(realm_sync_version=version)
    await sup.pusher.wait_idle()
    return await daemon.supervisord.realm_store.max_realm_version()


async def test_report_behind_catalog_triggers_push(
    tmp_path: Path, started: Started, channel_to: Channels, node_server: NodeFactory
) -> None:
    sup = await started(make_config(tmp_path))
    daemon = await node_server("a")
    node = NodeSim(channel_to(sup.address), "a", agent_addr=daemon.address)
    await node.register()
    await sup.catalog.add(1, "one", use_servers=[common_pb2.TURN])
    await sup.catalog.add(2, "two", enabled=False, expires_at=99)
    assert await report_and_wait(sup, node, daemon) == 2
    assert await node_realms(daemon) == {1: ("one", True, 1), 2: ("two", False, 2)}
    record = await sup.registry.get("a")
    assert record is not None and record.pushed_catalog_version == 2 and record.last_push_error is None
    # In sync now: a report does not push again.
    await node.report(realm_sync_version=2)
    assert sup.pusher.last_results("a")[-1].created == 2 and len(sup.pusher.last_results("a")) == 1


async def test_catalog_changes_reach_online_nodes(
    tmp_path: Path, started: Started, channel_to: Channels, node_server: NodeFactory
) -> None:
    """Update = delete + create with the new version; removal deletes; both pushed without a report."""
    sup = await started(make_config(tmp_path))
    daemon = await node_server("a")
    node = NodeSim(channel_to(sup.address), "a", agent_addr=daemon.address)
    await node.register()
    await sup.catalog.add(1, "one")
    await sup.catalog.add(2, "two")
    await report_and_wait(sup, node, daemon)
    await sup.catalog.update(1, name="uno", enabled=False)
    assert await sup.pusher.on_catalog_change() == 1
    await sup.pusher.wait_idle()
    assert await node_realms(daemon) == {1: ("uno", False, 3), 2: ("two", True, 2)}
    await sup.catalog.remove(2)
    await sup.pusher.on_catalog_change()
    await sup.pusher.wait_idle()
    assert await node_realms(daemon) == {1: ("uno", False, 3)}
    last = sup.pusher.last_results("a")[-1]
    assert (last.ok, last.created, last.deleted, last.pushed_version) == (True, 0, 1, 4)


async def test_node_down_then_back_catches_up(
    tmp_path: Path, started: Started, channel_to: Channels, node_server: NodeFactory
) -> None:
    """Realms added while a node is down are pushed after it comes back and registers again."""
    sup = await started(make_config(tmp_path))
    daemon = await node_server("a")
    node = NodeSim(channel_to(sup.address), "a", agent_addr=daemon.address)
    await node.register()
    await sup.catalog.add(1, "one")
    await report_and_wait(sup, node, daemon)
    await daemon.stop(0)

    await sup.catalog.add(2, "two")
    await sup.catalog.add(3, "three")
    await sup.pusher.on_catalog_change()
    await sup.pusher.wait_idle()
    failed = await sup.registry.get("a")
    assert failed is not None and failed.last_push_error and "UNAVAILABLE" in failed.last_push_error
    assert failed.pushed_catalog_version == 1

    back = await node_server("a", name="a")  # same data dir, new port
    node = NodeSim(channel_to(sup.address), "a", agent_addr=back.address)
    await node.register()  # resets the push backoff
    assert await report_and_wait(sup, node, back) == 3
    assert set(await node_realms(back)) == {1, 2, 3}
    ok = await sup.registry.get("a")
    assert ok is not None and ok.last_push_error is None and ok.pushed_catalog_version == 3


async def test_wiped_node_gets_everything_again(
    tmp_path: Path, started: Started, channel_to: Channels, node_server: NodeFactory
) -> None:
    """A node reporting realm_sync_version 0 after losing its database is refilled."""
    sup = await started(make_config(tmp_path))
    daemon = await node_server("a")
    node = NodeSim(channel_to(sup.address), "a", agent_addr=daemon.address)
    await node.register()
    await sup.catalog.add(1, "one")
    await report_and_wait(sup, node, daemon)
    fresh = await node_server("a", name="a-wiped")
    node = NodeSim(channel_to(sup.address), "a", agent_addr=fresh.address)
    await node.register()
    assert await report_and_wait(sup, node, fresh) == 1


async def test_push_is_signed_with_the_key_the_node_holds(
    tmp_path: Path, started: Started, channel_to: Channels, node_server: NodeFactory
) -> None:
    """Rotation: the supervisor accepts old and new; the node serves with the new key only."""
    config = make_config(tmp_path, node_secrets={"a": [NODE_A_HEX, NODE_A_NEW_HEX]})
    sup = await started(config)
    daemon = await node_server("a", NODE_A_NEW_HEX)
    old = NodeSim(channel_to(sup.address), "a", NODE_A_HEX, agent_addr=daemon.address)
    await old.register()  # the supervisor now prefers the old key for pushes
    await sup.catalog.add(1, "one")
    assert await report_and_wait(sup, old, daemon) == 1
    # Further pushes go straight to the new key (remembered after the refusal).
    await sup.catalog.add(2, "two")
    await sup.pusher.on_catalog_change()
    await sup.pusher.wait_idle()
    assert set(await node_realms(daemon)) == {1, 2}


async def test_wrong_secret_push_fails_and_is_noted(
    tmp_path: Path, started: Started, channel_to: Channels, node_server: NodeFactory
) -> None:
    sup = await started(make_config(tmp_path))
    daemon = await node_server("a", NODE_A_HEX)  # the supervisor only knows the fleet key for "a"
    node = NodeSim(channel_to(sup.address), "a", agent_addr=daemon.address)
    await node.register()
    await sup.catalog.add(1, "one")
    await node.report()
    await sup.pusher.wait_idle()
    result = sup.pusher.last_results("a")[-1]
    assert not result.ok and result.error is not None and "UNAUTHENTICATED" in result.error
    assert await node_realms(daemon) == {}


async def test_one_push_at_a_time_per_node_and_reports_never_wait(
    tmp_path: Path, started: Started, channel_to: Channels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many triggers while a (slow) push runs: never two pushes to one node at once; reports stay fast."""
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "a", agent_addr="127.0.0.1:9")
    await node.register()
    await sup.catalog.add(1, "one")
    running = peak = calls = 0
    release = asyncio.Event()

    async def slow_push(node_id: str, agent_addr: str, v: int, p: int) -> PushResult:
        nonlocal running, peak, calls
        running += 1
        calls += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return PushResult(node_id, True, sup.catalog.version)

    monkeypatch.setattr(sup.pusher, "push", slow_push)
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    for _ in range(5):
        await node.report()  # each would trigger a push; the first one blocks until released
    assert loop.time() - started_at < 2
    assert (peak, calls) == (1, 1)
    release.set()
    await sup.pusher.wait_idle()
    assert peak == 1 and calls <= 2  # at most one follow-up run for the triggers that came meanwhile
