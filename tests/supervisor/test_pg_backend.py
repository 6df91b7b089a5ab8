"""The PostgreSQL (+ Redis) backend: replicas sharing one store over real grpc.aio servers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from supervit import ConfigError, RpcError
from supervit.protocol import supervisor_pb2
from tests.stores import SharedStores
from tests.supervisor.conftest import NodeSim, make_config

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def replica_config(tmp_path: Path, stores: SharedStores, name: str, *, redis: bool = True, **server: Any) -> Any:
    return make_config(tmp_path / name, server={**stores.server_table(redis=redis), **server})


@pytest.mark.parametrize("redis", [True, False], ids=["redis-nonces", "pg-nonces"])
async def test_register_report_health_on_postgres(
    tmp_path: Path, stores: SharedStores, started: Started, channel_to: Channels, redis: bool
) -> None:
    """The service works as on SQLite: every field stored, replays refused, unknown nodes NOT_FOUND."""
    sup = await started(replica_config(tmp_path, stores, "a", redis=redis))
    assert sup.store.shared and sup.is_leader() in (True, False)
    node = NodeSim(channel_to(sup.address), "n1", agent_addr="127.0.0.1:7000")
    assert (await node.register()).success
    # The largest version the boundary admits (storable by every backend; beyond is INVALID_ARGUMENT).
    request = node.report_request(power=2, realm_sync_version=2**63 - 1)
    resp = await node.stub.Report(request)
    assert resp.received and resp.next_report_interval_secs == 2
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node.stub.Report(request)  # the same credential again
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and info.value.details() == "nonce already used"
    assert (await node.health()).healthy
    record = await sup.registry.get("n1")
    assert record is not None and record.online and record.reports == 1 and record.power_reserve_level == 2
    assert record.realm_sync_version == 2**63 - 1 and record.registration.location == "rack 4"
    assert record.metrics is not None and record.metrics.cpu_usage_percent == 12.5
    assert [n.node_id for n in await sup.registry.nodes()] == ["n1"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await NodeSim(channel_to(sup.address), "ghost").report()
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_credential_sent_to_every_replica_at_once_is_accepted_once(
    tmp_path: Path, stores: SharedStores, started: Started, channel_to: Channels
) -> None:
    """Three replicas, the same Report/RegisterNode/HealthCheck sent to all at the same instant."""
    for rounds, redis in enumerate((True, False), start=1):
        sups = [await started(replica_config(tmp_path, stores, f"{redis}{i}", redis=redis)) for i in range(3)]
        nodes = [NodeSim(channel_to(s.address), "n1") for s in sups]
        register = nodes[0].register_request()
        outcomes = await asyncio.gather(*(n.stub.RegisterNode(register) for n in nodes), return_exceptions=True)
        assert sum(not isinstance(o, BaseException) for o in outcomes) == 1, outcomes
        for _ in range(5):
            report = nodes[0].report_request()
            outcomes = await asyncio.gather(*(n.stub.Report(report) for n in nodes), return_exceptions=True)
            refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
            assert len(refused) == 2 and all(o.code() == grpc.StatusCode.UNAUTHENTICATED for o in refused)
        record = await sups[2].registry.get("n1")
        assert record is not None and record.reports == 5 * rounds  # same schema both rounds


async def test_directive_enqueued_on_one_replica_is_delivered_once(
    tmp_path: Path, stores: SharedStores, started: Started, channel_to: Channels, admin_to: Any
) -> None:
    """Enqueued through replica A's admin API; reports race to A and B: exactly one carries it."""
    a = await started(replica_config(tmp_path, stores, "a"))
    b = await started(replica_config(tmp_path, stores, "b"))
    node_a, node_b = NodeSim(channel_to(a.address), "n1"), NodeSim(channel_to(b.address), "n1")
    await node_a.register()
    admin = admin_to(a.admin_address)
    with pytest.raises(RpcError) as info:
        await admin.enqueue_directive("ghost", supervisor_pb2.REQUEST_FULL_REPORT)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    for _ in range(10):
        await admin.enqueue_directive("n1", supervisor_pb2.REQUEST_FULL_REPORT)
    await admin.enqueue_directive("n1", supervisor_pb2.ADJUST_INTERVAL, "7")
    delivered: list[int] = []
    rounds = 0
    while await b.directives.pending("n1") and rounds < 40:
        # Both race for the same oldest directive: the loser of the row delivers nothing this time.
        responses = await asyncio.gather(node_a.report(), node_b.report())
        delivered += [r.directive.type for r in responses if r.HasField("directive")]
        rounds += 1
    assert sorted(delivered) == sorted([supervisor_pb2.REQUEST_FULL_REPORT] * 10 + [supervisor_pb2.ADJUST_INTERVAL])
    assert await b.directives.pending("n1") == []
    # The override sticks whichever replica answers next (the racing report of the last round
    # may have committed before the directive was taken).
    assert (await node_b.report()).next_report_interval_secs == 7
    record = await a.registry.get("n1")
    assert record is not None and record.interval_override == 7 and record.reports == 2 * rounds + 1


async def test_catalog_and_leadership_move_between_replicas(
    tmp_path: Path, stores: SharedStores, started: Started
) -> None:
    """A catalog change on one replica reaches the other's version; one leader, which moves on stop."""
    a = await started(replica_config(tmp_path, stores, "a"))
    b = await started(replica_config(tmp_path, stores, "b"))

    async def one_leader() -> bool:
        return [a.is_leader(), b.is_leader()].count(True) == 1

    await eventually(one_leader)
    await b.catalog.add(7, "realm seven")

    async def a_knows() -> bool:
        return a.catalog.version == 1 and a.catalog.live_version == 1

    await eventually(a_knows)
    assert [r.realm_id for r in await a.catalog.realms()] == [7]
    with pytest.raises(Exception, match="already in the catalog"):
        await a.catalog.add(7, "again")
    leader, other = (a, b) if a.is_leader() else (b, a)
    await leader.stop(0)

    async def moved() -> bool:
        return other.is_leader()

    await eventually(moved, within=10)


async def test_bad_value_fails_only_its_own_report(
    tmp_path: Path, stores: SharedStores, started: Started, channel_to: Channels
) -> None:
    """A value PostgreSQL refuses (NUL in a text field) fails that report alone, not its group."""
    sup = await started(replica_config(tmp_path, stores, "a", redis=False))
    nodes = [NodeSim(channel_to(sup.address), f"n{i}") for i in range(20)]
    for node in nodes:
        await node.register()
    requests = [node.report_request() for node in nodes]
    requests[7].name = "bad\x00name"
    outcomes = await asyncio.gather(
        *(n.stub.Report(r) for n, r in zip(nodes, requests, strict=True)), return_exceptions=True
    )
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
    assert failed == [7]
    assert isinstance(outcomes[7], grpc.aio.AioRpcError) and outcomes[7].code() == grpc.StatusCode.INTERNAL
    assert (await nodes[7].report()).received  # the node's next (good) report is fine


class Gate:
    """A TCP proxy to PostgreSQL that can be cut (every connection dropped, new ones refused)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = True
        self._links: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links -= {writer, up_writer}

    def cut(self) -> None:
        self.open = False
        for writer in list(self._links):
            writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()


@pytest.mark.parametrize("cut", ["postgres", "redis"])
async def test_store_outage_fails_closed_and_recovers(
    tmp_path: Path, stores: SharedStores, started: Started, channel_to: Channels, cut: str
) -> None:
    """PostgreSQL or Redis unreachable: UNAVAILABLE (never an unchecked accept), health
    NOT_SERVING; back by itself."""
    server = {**stores.server_table(redis=cut == "redis"), "database_timeout_secs": 2}
    key = "database_url" if cut == "postgres" else "nonce_store_url"
    url = urlsplit(str(server[key]))
    gate = Gate((url.hostname or "127.0.0.1", url.port or (5432 if cut == "postgres" else 6379)))
    await gate.start()
    user = f"{url.username}@" if url.username else ""
    server[key] = urlunsplit(url._replace(netloc=f"{user}127.0.0.1:{gate.port}"))
    try:
        config = make_config(tmp_path, server=server)
        sup = await started(config)
        channel = channel_to(sup.address)
        node = NodeSim(channel, "n1")
        await node.register()

        async def reports() -> bool:
            try:
                return bool((await node.report()).received)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE  # a slow machine: the 2 s bound
                return False

        await eventually(reports)
        health = health_pb2_grpc.HealthStub(channel)

        async def status() -> Any:
            return (await health.Check(health_pb2.HealthCheckRequest(service=""))).status

        gate.cut()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await node.report()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE

        async def not_serving() -> bool:
            return await status() == health_pb2.HealthCheckResponse.NOT_SERVING

        await eventually(not_serving)
        gate.open = True

        async def serving() -> bool:
            return await status() == health_pb2.HealthCheckResponse.SERVING

        await eventually(serving)
        await eventually(reports)
        record = await sup.registry.get("n1")
        assert record is not None and record.reports >= 2
    finally:
        await gate.close()


async def test_migrate_check_and_config_errors(tmp_path: Path, stores: SharedStores) -> None:
    """The schema is created by the first start; invalid store keys name the key."""
    import asyncpg

    from supervit.supervisor._pg_schema import PG_MIGRATIONS, PendingMigrations, migrate

    conn = await asyncpg.connect(stores.database_url)
    try:
        with pytest.raises(PendingMigrations) as info:
            await migrate(conn, stores.schema, check_only=True)
        assert info.value.pending == [m.version for m in PG_MIGRATIONS]
        assert await migrate(conn, stores.schema) == (0, [m.version for m in PG_MIGRATIONS])
        assert await migrate(conn, stores.schema, check_only=True) == (PG_MIGRATIONS[-1].version, [])
    finally:
        await conn.close()
    with pytest.raises(ConfigError, match=r"server\.database_url"):
        make_config(tmp_path, server={"database_url": "mysql://x"})
    with pytest.raises(ConfigError, match=r"server\.nonce_store_url"):
        make_config(tmp_path, server={"nonce_store_url": "redis://127.0.0.1"})
    with pytest.raises(ConfigError, match=r"server\.database_schema"):
        make_config(tmp_path, server={"database_url": "postgresql://x", "database_schema": "Bad-Name"})


async def test_leaving_report_marks_stopped_on_postgres(
    tmp_path: Path, stores: SharedStores, started: Started, channel_to: Channels
) -> None:
    """Graceful leave on the shared store: "stopped" at once (seen by every replica), the queued
    directive stays queued, the next report brings the node back online."""
    from supervit.protocol import LEAVING_METADATA_KEY

    first = await started(replica_config(tmp_path, stores, "a"))
    second = await started(replica_config(tmp_path, stores, "b"))
    node = NodeSim(channel_to(first.address), "n1")
    await node.register()
    await node.report()
    await first.directives.enqueue("n1", supervisor_pb2.REQUEST_FULL_REPORT, None)
    answer = await node.stub.Report(node.report_request(), metadata=((LEAVING_METADATA_KEY, "SIGTERM"),))
    assert answer.received and not answer.HasField("directive")
    record = await second.registry.get("n1")
    assert record is not None and record.state == "stopped" and record.stopped_at is not None
    back = await node.report()
    assert back.directive.type == supervisor_pb2.REQUEST_FULL_REPORT
    record = await second.registry.get("n1")
    assert record is not None and record.state == "online" and record.stopped_at is None


async def test_burst_of_registrations_waits_for_pooled_connections(
    tmp_path: Path, stores: SharedStores, started: Started, channel_to: Channels
) -> None:
    """More concurrent RegisterNode calls than pooled connections: they queue, none is refused."""
    sup = await started(replica_config(tmp_path, stores, "a", database_pool_size=2))
    channel = channel_to(sup.address)
    outcomes = await asyncio.gather(*(NodeSim(channel, f"n{i}").register() for i in range(40)), return_exceptions=True)
    assert all(not isinstance(o, BaseException) and o.success for o in outcomes), outcomes
    assert len(await sup.registry.nodes()) == 40


async def test_catalog_changes_and_nonce_cleanup_on_postgres(
    tmp_path: Path, stores: SharedStores, started: Started, clock: Any
) -> None:
    """Catalog update/remove/get/changes_since as on SQLite; expired PostgreSQL nonces are deleted."""
    from supervit.supervisor import RealmNotFoundError

    sup = await started(replica_config(tmp_path, stores, "a", redis=False), clock=clock)
    catalog = sup.catalog
    await catalog.add(1, "one", use_servers=[1, 2])
    await catalog.add(2, "two")
    updated = await catalog.update(1, name="uno", enabled=False)
    assert (updated.name, updated.enabled, updated.use_servers, updated.version) == ("uno", False, (1, 2), 3)
    tomb = await catalog.remove(2)
    assert tomb.deleted and tomb.version == 4
    assert await catalog.get(2) is None and (await catalog.get(1)) == updated
    with pytest.raises(RealmNotFoundError):
        await catalog.update(2, name="gone")
    with pytest.raises(RealmNotFoundError):
        await catalog.remove(2)
    changes = await catalog.changes_since(2)
    assert [(e.realm_id, e.version, e.deleted) for e in changes.entries] == [(1, 3, False), (2, 4, True)]
    assert changes.catalog_version == 4 == catalog.version and catalog.live_version == 3
    again = await catalog.add(2, "two again")  # a removed id may come back
    assert again.version == 5 and not again.deleted

    nonces = sup.store.nonces
    assert await nonces.consume("old", clock.now - 10) and await nonces.consume("new", clock.now + 600)
    assert not await nonces.consume("old", clock.now + 600)
    await sup.store.cleanup()
    assert await nonces.consume("old", clock.now + 600)  # forgotten once expired
    assert not await nonces.consume("new", clock.now + 600)


async def test_list_nodes_pages_through_postgres_in_chunks(
    tmp_path: Path, stores: SharedStores, started: Started, channel_to: Channels, admin_to: Any
) -> None:
    """Admin ListNodes on PostgreSQL reads the nodes a chunk at a time: every node once, in key order."""
    sup = await started(replica_config(tmp_path, stores, "a"))
    channel = channel_to(sup.address)
    ids = [f"pg-node-{i:04d}" for i in range(611)]
    for start in range(0, len(ids), 150):
        await asyncio.gather(*(NodeSim(channel, node_id).register() for node_id in ids[start : start + 150]))
    admin = admin_to(sup.admin_address)
    whole = await admin.list_nodes_page()
    assert sorted(n.node_id for n in whole.nodes) == ids and whole.total_count == 611
    seen, token = [], ""
    while True:
        page = await admin.list_nodes_page(250, token)
        seen += [n.node_id for n in page.nodes]
        token = page.next_page_token
        if not token:
            break
    assert seen == [n.node_id for n in whole.nodes]
