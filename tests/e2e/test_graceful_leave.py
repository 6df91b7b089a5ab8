"""Graceful leave: a node stopped by SIGTERM, the Shutdown RPC or GRACEFUL_SHUTDOWN sends a final
report marked ``supervit-leaving`` and the supervisor shows it ``stopped`` at once (real processes)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest

from supervit.protocol import supervisor_pb2
from tests.conftest import SECRET_HEX
from tests.e2e.test_fleet import ADMIN_HEX, Fleet, Proc, clean_env, fleet, node, reporting

pytestmark = pytest.mark.e2e
__all__ = ["fleet"]  # the fixture, shared with test_fleet


async def wait_state(fleet: Fleet, node_id: str, state: str, within: float) -> float:
    """Poll until the node has ``state``; return how long it took (fails after ``within`` s)."""
    started = time.monotonic()
    listing = await fleet.admin.list_nodes()
    while time.monotonic() - started < within:
        listing = await fleet.admin.list_nodes()
        found = node(listing, node_id)
        if found is not None and found.state == state:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    pytest.fail(f"{node_id} not {state} within {within}s: {listing}")


async def exits_cleanly(proc: Proc) -> None:
    assert proc.process is not None
    assert await asyncio.wait_for(proc.process.wait(), 10) == 0, proc.log()


async def ctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supervit", "ctl", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_sigterm_shows_stopped_within_one_second(fleet: Fleet) -> None:
    await fleet.start_supervisor()
    edge = await fleet.start_node("edge-1")
    await fleet.wait("edge-1 reporting", reporting("edge-1"))
    assert edge.process is not None
    edge.process.send_signal(signal.SIGTERM)
    took = await wait_state(fleet, "edge-1", "stopped", within=1.0)
    print(f"edge-1 shown stopped {took * 1000:.0f} ms after SIGTERM")
    await exits_cleanly(edge)
    assert "final report sent" in edge.log()
    table = await ctl("nodes", "--admin", f"127.0.0.1:{fleet.admin_port}", "--admin-secret", ADMIN_HEX)
    row = next(line for line in table.splitlines() if line.startswith("edge-1"))
    assert " stopped " in row
    # Back with its next start, as online.
    await fleet.start_node("edge-1")
    await fleet.wait("edge-1 back online", reporting("edge-1"))


async def test_shutdown_rpc_and_directive_leave_gracefully(fleet: Fleet) -> None:
    await fleet.start_supervisor()
    first = await fleet.start_node("edge-1")
    second = await fleet.start_node("edge-2")
    await fleet.wait("both reporting", reporting("edge-1", "edge-2"))

    address = first.lines["supervit node listening on "]
    await ctl(
        "node", "shutdown", "--grace", "0", "--node", address, "--node-id", "edge-1", "--shared-secret", SECRET_HEX
    )
    await wait_state(fleet, "edge-1", "stopped", within=5)
    await exits_cleanly(first)

    await fleet.admin.enqueue_directive("edge-2", supervisor_pb2.GRACEFUL_SHUTDOWN, "maintenance")
    await wait_state(fleet, "edge-2", "stopped", within=10)
    await exits_cleanly(second)
    assert "GRACEFUL_SHUTDOWN directive (maintenance)" in second.log()


async def test_a_killed_node_is_offline_not_stopped(fleet: Fleet) -> None:
    """Only a node that says it leaves is "stopped"; one that vanishes goes offline after missed reports."""
    await fleet.start_supervisor()
    edge = await fleet.start_node("edge-1")
    await fleet.wait("edge-1 reporting", reporting("edge-1"))
    await edge.stop(signal.SIGKILL)
    await wait_state(fleet, "edge-1", "offline", within=15)
