"""PostgreSQL restarted under report load: UNAVAILABLE while it is down, nothing acknowledged lost, resumes.

Uses a private PostgreSQL cluster (``initdb`` in a temporary directory, run as the ``postgres``
user) so restarting it disturbs nobody else's database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from supervit.supervisor import Supervisor
from tests.stores import unavailable
from tests.supervisor.conftest import NodeSim, make_config

pytestmark = pytest.mark.e2e


def _pg_bin() -> Path | None:
    root = Path("/usr/lib/postgresql")
    versions = sorted(root.iterdir(), reverse=True) if root.is_dir() else []
    for version in versions:
        if (version / "bin" / "initdb").exists():
            return version / "bin"
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PrivateCluster:
    def __init__(self, bin_dir: Path, data: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.data = data
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # the server refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data / "db"), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data / "db"), "-o", options, "-l", str(self.data / "pg.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data / "db"), "-m", mode, "-w", "stop")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    bin_dir = _pg_bin()
    if bin_dir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        unavailable("PostgreSQL server binaries (initdb, pg_ctl)", "PATH", FileNotFoundError("initdb"))
        raise AssertionError("unreachable")
    data = Path(tempfile.mkdtemp(prefix="supervit-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    pg = PrivateCluster(bin_dir, data, _free_port())
    try:
        pg.init()
        pg.start()
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(data, ignore_errors=True)
        unavailable("a private PostgreSQL cluster", "PATH", exc)
    try:
        yield pg
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            pg.stop("immediate")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
async def supervisor(tmp_path: Path, cluster: PrivateCluster) -> AsyncIterator[Supervisor]:
    config = make_config(
        tmp_path, server={"database_url": cluster.url, "database_timeout_secs": 1.0, "database_pool_size": 4}
    )
    sup = Supervisor(config)
    await sup.start()
    yield sup
    await sup.stop(0)


async def test_postgres_restart_under_load(supervisor: Supervisor, cluster: PrivateCluster) -> None:
    channel = grpc.aio.insecure_channel(supervisor.address or "")
    health = health_pb2_grpc.HealthStub(channel)
    nodes = [NodeSim(channel, f"n{i}") for i in range(8)]
    for node in nodes:
        await node.register()
    acked = dict.fromkeys((n.node_id for n in nodes), 0)
    refused: list[grpc.StatusCode] = []
    stop = asyncio.Event()

    async def report_loop(node: NodeSim) -> None:
        while not stop.is_set():
            try:
                await node.stub.Report(node.report_request(), timeout=3)
                acked[node.node_id] += 1
            except grpc.aio.AioRpcError as exc:
                refused.append(exc.code())
            await asyncio.sleep(0.2)

    async def status() -> int:
        return int((await health.Check(health_pb2.HealthCheckRequest(service=""))).status)

    load = [asyncio.create_task(report_loop(n)) for n in nodes]
    try:
        await asyncio.sleep(1.5)
        before = sum(acked.values())
        assert before > 0 and not refused
        await asyncio.to_thread(cluster.stop, "fast")
        deadline = time.monotonic() + 20
        while not (await status() == health_pb2.HealthCheckResponse.NOT_SERVING and refused):
            assert time.monotonic() < deadline, "health did not turn NOT_SERVING / no request refused"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # load goes on against the stopped database
        assert refused and set(refused) == {grpc.StatusCode.UNAVAILABLE}, set(refused)
        down_acked = sum(acked.values())
        await asyncio.to_thread(cluster.start)
        deadline = time.monotonic() + 30
        while await status() != health_pb2.HealthCheckResponse.SERVING or sum(acked.values()) < down_acked + 8:
            assert time.monotonic() < deadline, "service did not resume after the restart"
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*load, return_exceptions=True)
    assert set(refused) == {grpc.StatusCode.UNAVAILABLE}
    for node in nodes:
        record = await supervisor.registry.get(node.node_id)
        assert record is not None and record.reports >= acked[node.node_id], (node.node_id, acked)
    await channel.close(None)
