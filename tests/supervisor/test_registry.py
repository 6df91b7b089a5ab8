"""The node registry on real SQLite: persistence across restarts, offline marking, directives exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit._exceptions import InvalidRequestError, NotFoundError
from supervit.protocol import supervisor_pb2
from supervit.supervisor import DirectiveQueue, open_supervisor_database
from tests.conftest import FakeClock
from tests.supervisor.conftest import NodeSim, make_config

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]


async def test_registry_survives_a_restart(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    """Registration fields, the last report and counters are read back by a new supervisor process."""
    config = make_config(tmp_path)
    first = await started(config)
    node = NodeSim(channel_to(first.address), "n1", agent_addr="127.0.0.1:7001")
    await node.register()
    await node.report(realm_sync_version=0, power=1)
    await first.stop(0)

    second = await started(make_config(tmp_path))
    record = await second.registry.get("n1")
    assert record is not None
    assert record.agent_addr == "127.0.0.1:7001" and record.version == "1.2.3" and record.location_tag == "lab"
    assert record.registration.services[0].name == "turn" and record.registration.power_reserve_level_init == 4
    assert record.power_reserve_level == 1 and record.reports == 1
    assert record.metrics is not None and record.metrics.load_average_1m == 0.5
    assert record.last_report_at is not None and record.registered_at <= record.last_report_at
    # A re-registration after the restart keeps first_registered_at and counts.
    node2 = NodeSim(channel_to(second.address), "n1", agent_addr="127.0.0.1:7002")
    await node2.register()
    again = await second.registry.get("n1")
    assert again is not None and again.registrations == 2 and again.agent_addr == "127.0.0.1:7002"
    assert again.first_registered_at == record.first_registered_at and again.reports == 1


async def test_offline_after_three_missed_intervals_and_back(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """A node silent for more than 3 x its interval is marked offline (kept), and online after a report."""
    clock = FakeClock()
    sup = await started(make_config(tmp_path), clock)
    channel = channel_to(sup.address)
    quiet, chatty = NodeSim(channel, "quiet", clock=clock), NodeSim(channel, "chatty", clock=clock)
    for node in (quiet, chatty):
        await node.register()
        await node.report()
    clock.now += 6  # exactly 3 x 2 s: not yet missed
    await chatty.report()
    assert await sup.sweep_once() == []
    clock.now += 1
    assert await sup.sweep_once() == ["quiet"]
    record = await sup.registry.get("quiet")
    assert record is not None and not record.online and record.offline_since == int(clock.now)
    assert (await sup.registry.get("chatty")).online  # type: ignore[union-attr]
    assert await sup.sweep_once() == []  # marked once
    await quiet.report()
    await sup.ingest.flush()
    back = await sup.registry.get("quiet")
    assert back is not None and back.online and back.offline_since is None


async def test_directives_delivered_exactly_once_in_order(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    queue = sup.directives
    await queue.enqueue("n1", supervisor_pb2.REQUEST_FULL_REPORT)
    _, position = await queue.enqueue("n1", supervisor_pb2.GRACEFUL_SHUTDOWN, "maintenance")
    assert position == 2
    first, second, third = await node.report(), await node.report(), await node.report()
    assert first.directive.type == supervisor_pb2.REQUEST_FULL_REPORT and not first.directive.HasField("payload")
    assert second.directive.type == supervisor_pb2.GRACEFUL_SHUTDOWN and second.directive.payload == "maintenance"
    assert not third.HasField("directive")
    assert await queue.pending("n1") == []


async def test_concurrent_reports_never_share_a_directive(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """20 reports at once, 5 directives queued: each directive shows up in exactly one response."""
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    for i in range(5):
        await sup.directives.enqueue("n1", supervisor_pb2.GRACEFUL_SHUTDOWN, f"d{i}")
    responses = await asyncio.gather(*(node.report() for _ in range(20)))
    delivered = [r.directive.payload for r in responses if r.HasField("directive")]
    assert sorted(delivered) == [f"d{i}" for i in range(5)]


async def test_directive_queue_persists_across_restart(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    first = await started(make_config(tmp_path))
    node = NodeSim(channel_to(first.address), "n1")
    await node.register()
    await first.directives.enqueue("n1", supervisor_pb2.REQUEST_FULL_REPORT)
    await first.stop(0)
    second = await started(make_config(tmp_path))
    response = await NodeSim(channel_to(second.address), "n1").report()
    assert response.directive.type == supervisor_pb2.REQUEST_FULL_REPORT


async def test_adjust_interval_becomes_the_nodes_interval(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """A delivered ADJUST_INTERVAL sets next_report_interval_secs from then on (and the offline deadline)."""
    clock = FakeClock()
    sup = await started(make_config(tmp_path), clock)
    node = NodeSim(channel_to(sup.address), "n1", clock=clock)
    await node.register()
    await sup.directives.enqueue("n1", supervisor_pb2.ADJUST_INTERVAL, " 10 ")
    response = await node.report()
    assert response.directive.payload == "10" and response.next_report_interval_secs == 10
    assert (await node.report()).next_report_interval_secs == 10
    clock.now += 25  # would be offline at 2 s, not at 10 s
    assert await sup.sweep_once() == []
    await node.register()  # survives re-registration
    assert (await node.report()).next_report_interval_secs == 10


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        (supervisor_pb2.ADJUST_INTERVAL, None, "ADJUST_INTERVAL"),
        (supervisor_pb2.ADJUST_INTERVAL, "0", "ADJUST_INTERVAL"),
        (supervisor_pb2.ADJUST_INTERVAL, "fast", "ADJUST_INTERVAL"),
        (0, None, "directive type"),
        (42, None, "directive type"),
        (supervisor_pb2.GRACEFUL_SHUTDOWN, "x" * 5000, "longer"),
    ],
)
async def test_invalid_directives_are_refused(tmp_path: Path, kind: int, payload: str | None, message: str) -> None:
    db = await open_supervisor_database(tmp_path)
    try:
        with pytest.raises(InvalidRequestError, match=message):
            await DirectiveQueue(db).enqueue("n1", kind, payload)
    finally:
        await db.close()


async def test_directive_for_unknown_node_is_refused(tmp_path: Path) -> None:
    db = await open_supervisor_database(tmp_path)
    try:
        with pytest.raises(NotFoundError):
            await DirectiveQueue(db).enqueue("nobody", supervisor_pb2.REQUEST_FULL_REPORT)
    finally:
        await db.close()


async def test_schema_v1_database_is_migrated(tmp_path: Path) -> None:
    """A supervisor.db written at schema 1 gains the report log (schema 2, renamed in 5) on open."""
    from supervit.storage import Database
    from supervit.supervisor import SUPERVISOR_DB_FILENAME, SUPERVISOR_MIGRATIONS

    old = await Database.open(tmp_path / SUPERVISOR_DB_FILENAME, SUPERVISOR_MIGRATIONS[:1])
    await old.close()
    db = await open_supervisor_database(tmp_path)
    try:
        version = await db.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        tables = await db.read(lambda c: [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")])
        assert version == SUPERVISOR_MIGRATIONS[-1].version and "report_log" in tables
    finally:
        await db.close()


async def test_leaving_report_marks_stopped_until_the_node_returns(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """A report with the supervit-leaving metadata: state "stopped" at once (not "offline"), the
    sweep leaves it alone, queued directives stay queued, and the next report brings it back."""
    from supervit.client import LEAVING_METADATA_KEY

    clock = FakeClock()
    sup = await started(make_config(tmp_path), clock)
    node = NodeSim(channel_to(sup.address), "n1", clock=clock)
    await node.register()
    await node.report()
    await sup.directives.enqueue("n1", supervisor_pb2.REQUEST_FULL_REPORT, None)
    answer = await node.stub.Report(node.report_request(), metadata=((LEAVING_METADATA_KEY, "SIGTERM"),))
    assert answer.received and not answer.HasField("directive")  # kept for the node's return
    record = await sup.registry.get("n1")
    assert record is not None and record.state == "stopped" and record.stopped_at == int(clock.now)
    clock.now += 3600
    assert await sup.sweep_once() == []
    assert (await sup.registry.get("n1")).state == "stopped"  # type: ignore[union-attr]
    back = await node.report()
    assert back.directive.type == supervisor_pb2.REQUEST_FULL_REPORT
    await sup.ingest.flush()
    record = await sup.registry.get("n1")
    assert record is not None and record.state == "online" and record.stopped_at is None
