"""A real fleet: ``supervit supervisor`` and ``supervit node`` processes on 127.0.0.1.

Covers registration and reports, offline detection of a killed node, re-registration after a
supervisor restart (registry kept) and after a restart with an empty registry (NOT_FOUND),
directives delivered exactly once, catalog push compensation for a node that was down, per-node
secrets with a two-key rotation, and ``supervit demo``. Intervals are 1 s so each test is short.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

import pytest

from supervit.auth import SharedSecret
from supervit.protocol import supervisor_pb2, supervit_admin_pb2
from supervit.supervisor import AdminClient, NodeListing, NodeSummary
from tests.conftest import OTHER_SECRET_HEX, SECRET_HEX

pytestmark = pytest.mark.e2e

ADMIN_HEX = "ad" * 32
OLD_HEX = "a1" * 32
NEW_HEX = "a2" * 32
SUP_LISTENING = "supervit supervisor listening on "
SUP_ADMIN = "supervit supervisor admin listening on "
NODE_LISTENING = "supervit node listening on "
SUP_METRICS = "supervit supervisor metrics listening on "
NODE_METRICS = "supervit node metrics listening on "
Listing = NodeListing
_NO_LISTING = NodeListing.from_message(supervit_admin_pb2.ListNodesResponse(server_timestamp=0, catalog_version=0))


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SUPERVIT_")}


class Proc:
    """One ``python -m supervit …`` process; stderr goes to ``<name>.log`` (appended across restarts)."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.lines: dict[str, str] = {}
        self._log: IO[bytes] | None = None

    async def start(self, *prefixes: str, env: dict[str, str] | None = None) -> Proc:
        self._log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "supervit",
            *self.args,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log,
            env=clean_env() if env is None else env,
        )
        assert self.process.stdout is not None
        for prefix in prefixes:
            line = (await asyncio.wait_for(self.process.stdout.readline(), 15)).decode().strip()
            assert line.startswith(prefix), f"{self.name}: unexpected line {line!r}\n{self.log()}"
            self.lines[prefix] = line.removeprefix(prefix)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
            if self._log is not None:
                self._log.close()
                self._log = None
        assert self.process.returncode is not None
        return self.process.returncode


class Fleet:
    """Configs, processes and an admin client for one test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Proc] = []
        self.sup_port = 0
        self.admin_port = 0
        self._admin: AdminClient | None = None

    def write_supervisor(self, *, node_secrets: dict[str, list[str]] | None = None, data: str = "sup-data") -> Path:
        lines = [
            "[server]",
            f'listen = "127.0.0.1:{self.sup_port}"',
            f'data_dir = "{self.root / data}"',
            'log_level = "debug"',
            "shutdown_grace_secs = 1",
            "[fleet]",
            f'shared_secret = "{SECRET_HEX}"',
            "report_interval_secs = 1",
            "heartbeat_interval_secs = 2",
            "[admin]",
            f'listen = "127.0.0.1:{self.admin_port}"',
            f'secret = "{ADMIN_HEX}"',
            "[metrics]",
            'listen = "127.0.0.1:0"',
            "[push]",
            "timeout_secs = 3",
            "backoff_base_secs = 0.2",
            "backoff_cap_secs = 1",
            "[node_secrets]",
            # TOML arrays of strings are valid JSON.
            *(f"{node_id} = {json.dumps(keys)}" for node_id, keys in (node_secrets or {}).items()),
        ]
        path = self.root / "supervisor.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    async def start_supervisor(self, *, args: tuple[str, ...] = (), **kwargs: object) -> Proc:
        config = self.write_supervisor(**kwargs)  # type: ignore[arg-type]
        proc = Proc("supervisor", ["supervisor", "--config", str(config), *args], self.root / "supervisor.log")
        self.procs.append(proc)
        await proc.start(SUP_LISTENING, SUP_ADMIN, SUP_METRICS)
        # Restarts keep the ports, so nodes find the supervisor again at the same endpoint.
        self.sup_port = int(proc.lines[SUP_LISTENING].rsplit(":", 1)[1])
        self.admin_port = int(proc.lines[SUP_ADMIN].rsplit(":", 1)[1])
        if self._admin is None:
            self._admin = AdminClient(f"127.0.0.1:{self.admin_port}", SharedSecret.from_hex(ADMIN_HEX), timeout_secs=3)
        return proc

    def write_node(self, node_id: str, secret: str, *, health_check_interval_secs: float = 2, extra: str = "") -> Path:
        path = self.root / f"{node_id}.toml"
        path.write_text(
            f"""[supervisor]
status_report_interval_secs = 1
health_check_interval_secs = {health_check_interval_secs}
min_report_interval_secs = 1
backoff_cap_secs = 1
connect_timeout_secs = 3
rpc_timeout_secs = 3

[supervisor.metrics]
listen = "127.0.0.1:0"

[supervisor.client]
node_id = "{node_id}"
shared_secret = "{secret}"
endpoint = "http://127.0.0.1:{self.sup_port}"

[supervisor.supervisord]
ip = "127.0.0.1"
port = 0
data_dir = "{self.root / node_id}"
log_level = "debug"
shutdown_grace_secs = 1
{extra}
"""
        )
        return path

    async def start_node(
        self, node_id: str, secret: str = SECRET_HEX, *, args: tuple[str, ...] = (), **kwargs: Any
    ) -> Proc:
        config = self.write_node(node_id, secret, **kwargs)
        proc = Proc(node_id, ["node", "--config", str(config), *args], self.root / f"{node_id}.log")
        self.procs.append(proc)
        return await proc.start(NODE_LISTENING, NODE_METRICS)

    @property
    def admin(self) -> AdminClient:
        assert self._admin is not None
        return self._admin

    async def wait(self, what: str, ready: Callable[[Listing], bool], within: float = 15) -> Listing:
        """Poll ListNodes until ``ready``; on timeout fail with the listing and the logs' tails."""
        deadline = time.monotonic() + within
        listing = _NO_LISTING
        while time.monotonic() < deadline:
            try:
                listing = await self.admin.list_nodes()
            except Exception:  # the supervisor may be restarting
                listing = _NO_LISTING
            if ready(listing):
                return listing
            await asyncio.sleep(0.2)
        tails = "\n".join(f"--- {p.name}\n" + "\n".join(p.log().splitlines()[-15:]) for p in self.procs)
        pytest.fail(f"timed out waiting for {what}; last listing: {listing}\n{tails}")

    async def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.process is not None:
                await proc.stop(signal.SIGKILL)  # also closes the log of a process that exited by itself
        if self._admin is not None:
            await self._admin.close()


def node(listing: Listing, node_id: str) -> NodeSummary | None:
    return next((n for n in listing.nodes if n.node_id == node_id), None)


def reporting(*node_ids: str) -> Callable[[Listing], bool]:
    def check(listing: Listing) -> bool:
        return all(
            (n := node(listing, i)) is not None and n.state == "online" and n.last_report_at is not None
            for i in node_ids
        )

    return check


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    f = Fleet(tmp_path)
    yield f
    await f.close()


async def test_register_report_offline_and_back(fleet: Fleet) -> None:
    """Two nodes register and report; a killed node goes offline (kept), then comes back.

    The supervisor runs on asyncio's loop, the nodes on the default choice (uvloop when installed):
    each loop serves both directions of the protocol."""
    sup = await fleet.start_supervisor(args=("--event-loop", "asyncio"))
    one = await fleet.start_node("node-1")
    two = await fleet.start_node("node-2")
    listing = await fleet.wait("both nodes reporting", reporting("node-1", "node-2"))
    assert "running on the asyncio event loop" in sup.log()
    default_loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert f"running on the {default_loop} event loop" in one.log()
    summary = node(listing, "node-1")
    assert summary is not None and summary.agent_addr.startswith("127.0.0.1:") and summary.report_interval_secs == 1
    await two.stop(signal.SIGKILL)
    listing = await fleet.wait("node-2 offline", lambda ls: getattr(node(ls, "node-2"), "state", "") == "offline")
    gone = node(listing, "node-2")
    assert gone is not None and gone.offline_since is not None
    assert getattr(node(listing, "node-1"), "state", "") == "online"
    await fleet.start_node("node-2")
    await fleet.wait("node-2 online again", reporting("node-2"))


async def test_reregistration_after_supervisor_restart(fleet: Fleet) -> None:
    """Restart with the registry kept: the node re-registers into its old record. Restart with an
    empty registry: the node's next report gets NOT_FOUND and it registers from scratch."""
    sup = await fleet.start_supervisor()
    await fleet.start_node("node-1")
    first = node(await fleet.wait("node-1 reporting", reporting("node-1")), "node-1")
    assert first is not None
    assert await sup.stop() == 0

    restarted = await fleet.start_supervisor()
    again = await fleet.wait(
        "node-1 reporting after a restart",
        lambda ls: reporting("node-1")(ls) and getattr(node(ls, "node-1"), "last_report_at", 0) > first.last_report_at,
    )
    kept = node(again, "node-1")
    assert kept is not None and kept.first_registered_at == first.first_registered_at

    assert await restarted.stop() == 0
    await fleet.start_supervisor(data="sup-data-empty")
    fresh = node(await fleet.wait("node-1 registered in the empty registry", reporting("node-1")), "node-1")
    assert fresh is not None and fresh.first_registered_at > first.first_registered_at


async def test_directives_exactly_once(fleet: Fleet) -> None:
    """REQUEST_FULL_REPORT reaches the node once; GRACEFUL_SHUTDOWN stops it cleanly."""
    await fleet.start_supervisor()
    one = await fleet.start_node("node-1")
    await fleet.wait("node-1 reporting", reporting("node-1"))
    queued = await fleet.admin.enqueue_directive("node-1", supervisor_pb2.REQUEST_FULL_REPORT)
    assert queued.position == 1
    await fleet.wait("the directive delivered", lambda ls: getattr(node(ls, "node-1"), "pending_directives", 1) == 0)
    before = getattr(node(await fleet.admin.list_nodes(), "node-1"), "last_report_at", None) or 0
    await fleet.wait(
        "three more reports", lambda ls: (getattr(node(ls, "node-1"), "last_report_at", None) or 0) >= before + 3
    )
    assert one.log().count("supervisor requested a full report") == 1
    await fleet.admin.enqueue_directive("node-1", supervisor_pb2.GRACEFUL_SHUTDOWN, "e2e says bye")
    assert one.process is not None
    assert await asyncio.wait_for(one.process.wait(), 15) == 0
    assert "e2e says bye" in one.log()
    assert (await fleet.admin.list_nodes()).nodes[0].pending_directives == 0


def synced(*node_ids: str, version: int) -> Callable[[Listing], bool]:
    def check(listing: Listing) -> bool:
        return all(
            (n := node(listing, i)) is not None and n.sync_lag == 0 and n.realm_sync_version == version
            for i in node_ids
        )

    return check


async def realm_ids(fleet: Fleet, node_id: str, address: str, secret: str = SECRET_HEX) -> list[int]:
    """The node's realm ids, asked through ``supervit ctl realm list --json`` (a real process)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supervit",
        "ctl",
        "realm",
        "list",
        "--json",
        "--node",
        address,
        "--node-id",
        node_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**clean_env(), "SUPERVIT_SHARED_SECRET": secret},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    return [r["realm_id"] for r in json.loads(out)["realms"]]


async def test_catalog_push_compensates_a_node_that_was_down(fleet: Fleet) -> None:
    await fleet.start_supervisor()
    one = await fleet.start_node("node-1")
    two = await fleet.start_node("node-2")
    await fleet.wait("both reporting", reporting("node-1", "node-2"))
    await fleet.admin.add_realm(1, "first")
    await fleet.wait("realm 1 on both", synced("node-1", "node-2", version=1))
    assert await two.stop() == 0
    await fleet.admin.add_realm(2, "second")
    await fleet.admin.add_realm(3, "third")
    await fleet.admin.update_realm(1, name="first, renamed")
    await fleet.wait("node-1 caught up", synced("node-1", version=4))
    lagging = node(await fleet.admin.list_nodes(), "node-2")
    assert lagging is not None and lagging.sync_lag > 0 and lagging.realm_sync_version == 1
    two = await fleet.start_node("node-2")  # same data dir: it still holds realm 1 at version 1
    await fleet.wait("node-2 caught up", synced("node-1", "node-2", version=4))
    assert await realm_ids(fleet, "node-2", two.lines[NODE_LISTENING]) == [1, 2, 3]
    assert await realm_ids(fleet, "node-1", one.lines[NODE_LISTENING]) == [1, 2, 3]
    await fleet.admin.remove_realm(2)
    await fleet.wait(
        "removal pushed", lambda ls: all(n.sync_lag == 0 and n.pushed_catalog_version == 5 for n in ls.nodes)
    )
    assert await realm_ids(fleet, "node-2", two.lines[NODE_LISTENING]) == [1, 3]


async def test_per_node_secrets_and_two_key_rotation(fleet: Fleet) -> None:
    """node-a has its own key and rotates it (old+new accepted, then new only); node-b uses the fleet
    key; node-c signs with a key the supervisor does not hold for it and is refused."""
    await fleet.start_supervisor(node_secrets={"node-a": [OLD_HEX, NEW_HEX], "node-c": [NEW_HEX]})
    a = await fleet.start_node("node-a", OLD_HEX)
    await fleet.start_node("node-b", SECRET_HEX)
    c = await fleet.start_node("node-c", OTHER_SECRET_HEX)
    await fleet.wait("node-a (old key) and node-b reporting", reporting("node-a", "node-b"))
    await fleet.admin.add_realm(10, "rotated")
    await fleet.wait("realm pushed with the old key", synced("node-a", "node-b", version=1))

    assert await a.stop() == 0
    a = await fleet.start_node("node-a", NEW_HEX)  # the node switched to the new key
    await fleet.admin.add_realm(11, "after switch")
    await fleet.wait("realm pushed with the new key", synced("node-a", "node-b", version=2))

    sup = fleet.procs[0]
    assert await sup.stop() == 0
    await fleet.start_supervisor(node_secrets={"node-a": [NEW_HEX], "node-c": [NEW_HEX]})  # old key retired
    before = node(await fleet.wait("node-a reporting", reporting("node-a")), "node-a")
    assert before is not None
    await fleet.wait(
        "node-a keeps reporting with the new key only",
        lambda ls: getattr(node(ls, "node-a"), "last_report_at", 0) >= before.last_report_at + 2,
    )
    assert node(await fleet.admin.list_nodes(), "node-c") is None
    assert c.running
    assert "invalid signature" in "".join(p.log() for p in fleet.procs if p.name == "supervisor")
    assert await realm_ids(fleet, "node-a", a.lines[NODE_LISTENING], NEW_HEX) == [10, 11]


async def test_demo_runs_and_exits_zero(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supervit",
        "demo",
        "--duration",
        "15",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
        cwd=tmp_path,
    )
    out_b, err_b = await asyncio.wait_for(proc.communicate(), 60)
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode == 0, out + err
    for text in ("demo-1 registered", "demo-2 registered", "arrived on demo-1", "arrived on demo-2"):
        assert text in out, out
    assert "2 nodes registered, 2 online, realm 1 synced on 2/2" in out
    assert "everything stopped cleanly" in out
