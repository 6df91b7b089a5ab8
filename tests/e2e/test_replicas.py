"""Three ``supervit supervisor`` replicas on PostgreSQL + Redis, real ``supervit node`` processes listing
all three endpoints, and a simulated fleet reporting to them; one replica is killed with SIGKILL under load.

Shows: every node reports again within 2 × its interval, no acknowledged report is lost, a credential
sent to all replicas at once is accepted once, a directive enqueued through one replica's admin API is
delivered once, a catalog change is pushed once per node, and the leader moves to a survivor.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.auth import SharedSecret
from supervit.protocol import common_pb2, supervised_pb2, supervisor_pb2
from supervit.supervisor import AdminClient, NodeListing
from tests.conftest import SECRET_HEX
from tests.e2e.test_fleet import NODE_LISTENING, SUP_ADMIN, SUP_LISTENING, Proc
from tests.stores import SharedStores
from tests.supervisor.conftest import NodeSim

pytestmark = pytest.mark.e2e

ADMIN_HEX = "ad" * 32
# Seconds between reports, fleet-wide. Failing over costs about a second; a longer interval keeps
# "again within 2 intervals" meaningful when the suite's parallel workers starve this process.
INTERVAL = 5
SIM_NODES = 8
LEADER_ON = "now the fleet leader"
LEADER_OFF = "no longer the fleet leader"


class FakeAgent:
    """A node's SupervisedService as far as catalog pushes need it: realms in memory, calls counted."""

    def __init__(self) -> None:
        self.realms: dict[int, supervised_pb2.CreateRealmRequest] = {}
        self.creates: list[int] = []
        self.server = grpc.aio.server()
        self.port = 0

    async def start(self) -> str:
        def unary(fn: Callable[[Any], Any], request_cls: Any) -> grpc.RpcMethodHandler[Any, Any]:
            async def handle(request: Any, context: Any) -> Any:
                return fn(request)

            return grpc.unary_unary_rpc_method_handler(
                handle, request_deserializer=request_cls.FromString, response_serializer=lambda m: m.SerializeToString()
            )

        handlers = {
            "GetRealm": unary(self._get, supervised_pb2.GetRealmRequest),
            "CreateRealm": unary(self._create, supervised_pb2.CreateRealmRequest),
            "DeleteRealm": unary(self._delete, supervised_pb2.DeleteRealmRequest),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("supervisor.v1.SupervisedService", handlers),)
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{self.port}"

    def _info(self, realm_id: int) -> common_pb2.RealmInfo:
        r = self.realms[realm_id]
        return common_pb2.RealmInfo(
            realm_id=realm_id,
            name=r.name,
            enabled=r.enabled,
            created_at=1,
            version=r.version,
            expires_at=r.expires_at,
            status="Normal",
        )

    def _get(self, request: supervised_pb2.GetRealmRequest) -> supervised_pb2.GetRealmResponse:
        if request.realm_id not in self.realms:
            return supervised_pb2.GetRealmResponse(success=False, error_message="realm not found")
        return supervised_pb2.GetRealmResponse(success=True, realm=self._info(request.realm_id))

    def _create(self, request: supervised_pb2.CreateRealmRequest) -> supervised_pb2.CreateRealmResponse:
        self.creates.append(request.realm_id)
        self.realms[request.realm_id] = request
        return supervised_pb2.CreateRealmResponse(success=True, realm=self._info(request.realm_id))

    def _delete(self, request: supervised_pb2.DeleteRealmRequest) -> supervised_pb2.DeleteRealmResponse:
        self.realms.pop(request.realm_id, None)
        return supervised_pb2.DeleteRealmResponse(success=True)

    @property
    def realm_version(self) -> int:
        return max((r.version for r in self.realms.values()), default=0)


class SimNode:
    """A simulated node: reports every INTERVAL to its current replica, moves on UNAVAILABLE/deadline."""

    def __init__(self, node_id: str, channels: list[grpc.aio.Channel], start: int, agent: FakeAgent) -> None:
        self.node_id = node_id
        self.agent = agent
        self.sims = [NodeSim(channel, node_id) for channel in channels]
        self.current = start % len(channels)
        self.acked = 0
        self.acked_at: list[float] = []
        self.directives: list[int] = []
        self.failovers = 0

    async def register(self, agent_addr: str) -> None:
        for sim in self.sims:
            sim.agent_addr = agent_addr
        while True:
            try:
                await self.sims[self.current].register()
                return
            except grpc.aio.AioRpcError:
                self._next()
                await asyncio.sleep(0.2)

    def _next(self) -> None:
        self.current = (self.current + 1) % len(self.sims)
        self.failovers += 1

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                response = await self.sims[self.current].stub.Report(
                    self.sims[self.current].report_request(realm_sync_version=self.agent.realm_version), timeout=1.5
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    await self.sims[self.current].register()
                else:
                    self._next()
                await asyncio.sleep(0.1)
                continue
            self.acked += 1
            self.acked_at.append(time.monotonic())
            if response.HasField("directive"):
                self.directives.append(response.directive.type)
            await asyncio.sleep(max(0.0, started + INTERVAL - time.monotonic()))


class Cluster:
    def __init__(self, root: Path, stores: SharedStores) -> None:
        self.root = root
        self.stores = stores
        self.replicas: list[Proc] = []
        self.nodes: list[Proc] = []
        self.endpoints: list[str] = []
        self.admins: list[AdminClient] = []

    async def start_replica(self, i: int) -> Proc:
        path = self.root / f"sup{i}.toml"
        table = self.stores.server_table()
        path.write_text(
            "\n".join(
                [
                    "[server]",
                    'listen = "127.0.0.1:0"',
                    f'data_dir = "{self.root / f"sup{i}"}"',
                    "shutdown_grace_secs = 1",
                    *(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in table.items()),
                    "[fleet]",
                    f'shared_secret = "{SECRET_HEX}"',
                    f"report_interval_secs = {INTERVAL}",
                    "heartbeat_interval_secs = 5",
                    "offline_after_missed = 3",
                    "[admin]",
                    'listen = "127.0.0.1:0"',
                    f'secret = "{ADMIN_HEX}"',
                    "[metrics]",
                    'listen = ""',  # never the default port: several daemons on one machine
                    "[push]",
                    "timeout_secs = 3",
                    "backoff_base_secs = 0.2",
                    "backoff_cap_secs = 1",
                ]
            )
            + "\n"
        )
        proc = Proc(f"sup{i}", ["supervisor", "--config", str(path)], self.root / f"sup{i}.log")
        await proc.start(SUP_LISTENING, SUP_ADMIN)
        self.replicas.append(proc)
        self.endpoints.append(proc.lines[SUP_LISTENING])
        self.admins.append(AdminClient(proc.lines[SUP_ADMIN], SharedSecret.from_hex(ADMIN_HEX), timeout_secs=5))
        return proc

    async def start_node(self, node_id: str, first: int) -> Proc:
        order = self.endpoints[first:] + self.endpoints[:first]
        endpoints = ", ".join(f'"http://{e}"' for e in order)
        path = self.root / f"{node_id}.toml"
        path.write_text(
            f"""[supervisor]
status_report_interval_secs = {INTERVAL}
health_check_interval_secs = 5
min_report_interval_secs = 1
backoff_base_secs = 0.2
backoff_cap_secs = 1
connect_timeout_secs = 3
rpc_timeout_secs = 2

[supervisor.metrics]
listen = ""

[supervisor.client]
node_id = "{node_id}"
shared_secret = "{SECRET_HEX}"
endpoints = [{endpoints}]

[supervisor.supervisord]
ip = "127.0.0.1"
port = 0
data_dir = "{self.root / node_id}"
shutdown_grace_secs = 1
"""
        )
        proc = Proc(node_id, ["node", "--config", str(path)], self.root / f"{node_id}.log")
        await proc.start(NODE_LISTENING)
        self.nodes.append(proc)
        return proc

    def leaders(self) -> list[int]:
        """Replicas (running ones) whose latest leadership line says they lead."""
        found = []
        for i, proc in enumerate(self.replicas):
            lines = [line for line in proc.log().splitlines() if LEADER_ON in line or LEADER_OFF in line]
            if proc.running and lines and LEADER_ON in lines[-1]:
                found.append(i)
        return found

    async def listing(self, i: int) -> NodeListing:
        return await self.admins[i].list_nodes()

    def tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + "\n".join(p.log().splitlines()[-20:]) for p in [*self.replicas, *self.nodes]
        )

    async def eventually(self, what: str, check: Callable[[], Awaitable[bool]], within: float = 30) -> None:
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(Exception):
                if await check():
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}\n{self.tails()}")
            await asyncio.sleep(0.2)

    async def close(self) -> None:
        for admin in self.admins:
            await admin.close()
        for proc in [*self.nodes, *self.replicas]:
            if proc.process is not None:
                await proc.stop(signal.SIGKILL)


@pytest.fixture
async def cluster(tmp_path: Path, stores: SharedStores) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, stores)
    yield c
    await c.close()


@pytest.mark.timeout(300)
async def test_three_replicas_survive_the_leader_killed_under_load(cluster: Cluster) -> None:
    for i in range(3):
        await cluster.start_replica(i)

    async def one_leader() -> bool:
        return len(cluster.leaders()) == 1

    await cluster.eventually("one leader among three replicas", one_leader)
    real = [await cluster.start_node(f"node-{i}", i) for i in range(2)]

    channels = [grpc.aio.insecure_channel(e) for e in cluster.endpoints]
    agents = [FakeAgent() for _ in range(SIM_NODES)]
    sims = [SimNode(f"sim-{i:02d}", channels, i, agents[i]) for i in range(SIM_NODES)]
    for sim, agent in zip(sims, agents, strict=True):
        await sim.register(await agent.start())
    load = [asyncio.create_task(sim.run()) for sim in sims]
    all_ids = {f"node-{i}" for i in range(2)} | {s.node_id for s in sims}
    try:

        async def everyone_reporting() -> bool:
            listing = await cluster.listing(2)
            live = {n.node_id for n in listing.nodes if n.state == "online" and n.last_report_at is not None}
            return live >= all_ids

        await cluster.eventually("every node reporting", everyone_reporting)

        # The same credential to all three replicas at the same instant: accepted exactly once.
        probe = sims[0].sims[0]  # sim-00's own identity and agent address
        for make, call in (
            (probe.report_request, lambda c, r: NodeSim(c, "sim-00").stub.Report(r)),
            (probe.register_request, lambda c, r: NodeSim(c, "sim-00").stub.RegisterNode(r)),
        ):
            request = make()
            outcomes = await asyncio.gather(*(call(c, request) for c in channels), return_exceptions=True)
            assert sum(not isinstance(o, BaseException) for o in outcomes) == 1, outcomes
            assert all(
                o.code() == grpc.StatusCode.UNAUTHENTICATED for o in outcomes if isinstance(o, grpc.aio.AioRpcError)
            )

        # A directive enqueued through replica 2's admin API: delivered once, whichever replica answers.
        await cluster.admins[2].enqueue_directive("sim-03", supervisor_pb2.REQUEST_FULL_REPORT)
        await cluster.admins[1].enqueue_directive("node-1", supervisor_pb2.REQUEST_FULL_REPORT)

        async def delivered() -> bool:
            listing = await cluster.listing(0)
            pending = {n.node_id: n.pending_directives for n in listing.nodes}
            return sims[3].directives == [supervisor_pb2.REQUEST_FULL_REPORT] and pending["node-1"] == 0

        await cluster.eventually("directives delivered", delivered)

        # A catalog change through a replica that is not the leader: pushed once to every node.
        (leader,) = cluster.leaders()
        other = (leader + 1) % 3
        await cluster.admins[other].add_realm(41, "forty-one")

        async def pushed(version: int) -> bool:
            listing = await cluster.listing(other)
            synced = {n.node_id for n in listing.nodes if n.realm_sync_version >= version}
            return synced >= all_ids

        await cluster.eventually("realm 41 on every node", lambda: pushed(1))
        assert [a.creates for a in agents] == [[41]] * SIM_NODES
        for proc in real:
            assert proc.log().count("realm 41 created") == 1

        # Kill the leader under load.
        before = {n.node_id: n.last_report_at for n in (await cluster.listing(other)).nodes}
        killed_at = time.monotonic()
        killed_wall = int(time.time())
        await cluster.replicas[leader].stop(signal.SIGKILL)
        first_after: dict[str, int] = {}

        async def new_leader() -> bool:
            return len(cluster.leaders()) == 1 and cluster.leaders()[0] != leader

        await cluster.eventually("a surviving replica taking the lead", new_leader, within=15)
        survivor = cluster.leaders()[0]

        async def all_back() -> bool:
            listing = await cluster.listing(survivor)
            times = {n.node_id: n.last_report_at for n in listing.nodes}
            for node_id, at in times.items():
                if at > killed_wall:
                    first_after.setdefault(node_id, at)  # polled every 0.2 s: the first report after
            return all(times[i] > killed_wall for i in all_ids) and all(
                any(t > killed_at + 0.01 for t in s.acked_at) for s in sims
            )

        await cluster.eventually("every node reporting after the kill", all_back)
        # Each simulated node reported again within 2 intervals: the gap between its last
        # acknowledged report before the kill and its first one after.
        gaps = [
            min(t for t in s.acked_at if t > killed_at) - max(t for t in s.acked_at if t <= killed_at) for s in sims
        ]
        assert max(gaps) <= 2 * INTERVAL, gaps
        for node_id in ("node-0", "node-1"):  # server times are whole seconds: one more of slack
            assert first_after[node_id] - before[node_id] <= 2 * INTERVAL + 1, (node_id, before, first_after)

        # The new leader pushes the next catalog change, again once per node.
        await cluster.admins[survivor].add_realm(42, "forty-two")
        await cluster.eventually("realm 42 on every node", lambda: pushed(2))
        assert [a.creates for a in agents] == [[41, 42]] * SIM_NODES
        for proc in real:
            assert proc.log().count("realm 42 created") == 1
    finally:
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)

    # Zero acknowledged reports lost: every acknowledged report is counted in the shared registry.
    listing = await cluster.listing(survivor)
    counted = {n.node_id: n for n in listing.nodes}
    registry_reports = await _reports_by_node(cluster)
    for sim in sims:
        assert registry_reports[sim.node_id] >= sim.acked, (sim.node_id, registry_reports[sim.node_id], sim.acked)
    assert set(counted) == all_ids
    for channel in channels:
        await channel.close(None)
    for agent in agents:
        await agent.server.stop(None)


async def _reports_by_node(cluster: Cluster) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(cluster.stores.database_url)
    try:
        rows = await conn.fetch(f'SELECT node_id, reports FROM "{cluster.stores.schema}".nodes')
    finally:
        await conn.close()
    return {str(r[0]): int(r[1]) for r in rows}
