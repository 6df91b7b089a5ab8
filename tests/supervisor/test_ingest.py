"""The Report/HealthCheck hot path: batched, answered only once durable, replays refused across restarts."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.protocol import supervisor_pb2
from supervit.supervisor import SUPERVISOR_DB_FILENAME, SUPERVISOR_MIGRATIONS, RecentNonces, _ingest
from supervit.supervisor._registry import encode_without_credential
from supervit.supervisor._report_log import decode_reports
from tests.supervisor.conftest import NodeSim, make_config

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]


async def test_replays_refused_after_a_restart(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    """Nonces consumed before a clean stop are loaded back: the same Report or HealthCheck is refused."""
    first = await started(make_config(tmp_path))
    node = NodeSim(channel_to(first.address), "n1")
    await node.register()
    report = node.report_request()
    await node.stub.Report(report)
    health = supervisor_pb2.HealthCheckRequest(node_id="n1")
    health.credential.CopyFrom(node.signer.credential("health_check:n1"))
    await node.stub.HealthCheck(health)
    await first.stop(0)

    second = await started(make_config(tmp_path))
    again = NodeSim(channel_to(second.address), "n1")
    for call, request in ((again.stub.Report, report), (again.stub.HealthCheck, health)):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(request)
        assert info.value.details() == "nonce already used"
    assert (await again.report()).received  # fresh credentials still pass


async def test_report_is_durable_before_it_is_answered(tmp_path: Path, started: Started, channel_to: Channels) -> None:
    """When Report/HealthCheck return, their nonces and the report are committed (seen by another connection)."""
    config = make_config(tmp_path)
    db_path = config.server.data_dir / SUPERVISOR_DB_FILENAME
    sup = await started(config)
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    report = node.report_request(power=2, realm_sync_version=41)
    await node.stub.Report(report)
    health = supervisor_pb2.HealthCheckRequest(node_id="n1")
    health.credential.CopyFrom(node.signer.credential("health_check:n1"))
    await node.stub.HealthCheck(health)
    # No flush: an independent connection must already see both nonces and the report (in the log).
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT nonces, reports FROM report_log").fetchall()
    stored = {n for text, _ in rows for n in json.loads(text)}
    logged = [r for _, value in rows if value is not None for r in decode_reports(value)[0]]
    assert {report.credential.nonce, health.credential.nonce} <= stored
    assert [(r.request.node_id, r.request.power_reserve_level, r.request.realm_sync_version) for r in logged] == [
        ("n1", 2, 41)
    ]
    assert logged[0].raw == report.SerializeToString()  # stored as received, nothing re-encoded


async def test_reports_reach_the_node_rows_within_the_fold_interval(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    config = make_config(tmp_path)
    sup = await started(config)
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    await node.report(power=3, realm_sync_version=5)
    await asyncio.sleep(_ingest._FOLD_INTERVAL_SECS + 0.5)  # no flush: the periodic fold does it
    with sqlite3.connect(config.server.data_dir / SUPERVISOR_DB_FILENAME) as conn:
        row = conn.execute("SELECT reports, power_reserve_level, realm_sync_version FROM nodes").fetchone()
        (through,) = conn.execute("SELECT value FROM meta WHERE key = 'reports_folded_through'").fetchone()
        (newest,) = conn.execute("SELECT MAX(batch_id) FROM report_log").fetchone()
    assert row == (1, 3, 5) and through == newest


async def test_acknowledged_reports_survive_a_crash_before_the_fold(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """A snapshot of the live database (what a crash leaves on disk) holds every acknowledged report:
    a supervisor started on it folds them into the node rows before serving."""
    config = make_config(tmp_path)
    sup = await started(config)
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    await asyncio.gather(*(node.report(power=1, realm_sync_version=i) for i in range(5)))
    await node.report(power=4, realm_sync_version=9)
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    with (
        sqlite3.connect(config.server.data_dir / SUPERVISOR_DB_FILENAME) as live,
        sqlite3.connect(crashed / SUPERVISOR_DB_FILENAME) as copy,
    ):
        assert live.execute("SELECT reports FROM nodes").fetchone() == (0,)  # not folded yet
        live.backup(copy)
    recovered = await started(make_config(tmp_path, server={"data_dir": str(crashed)}))
    record = await recovered.registry.get("n1")
    assert record is not None and (record.reports, record.power_reserve_level, record.realm_sync_version) == (6, 4, 9)


async def test_registration_is_not_overwritten_by_an_earlier_report(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    await node.report()  # carries version 1.2.3, not folded yet
    await node.register(version="2.0.0")
    await sup.ingest.flush()
    record = await sup.registry.get("n1")
    assert record is not None and record.version == "2.0.0"


@pytest.mark.parametrize("update_from", [True, False], ids=["update-from", "row-by-row"])
async def test_fast_reports_are_persisted(
    tmp_path: Path, started: Started, channel_to: Channels, monkeypatch: pytest.MonkeyPatch, update_from: bool
) -> None:
    """Acknowledged reports reach the registry: counted exactly, last one kept (both SQL strategies)."""
    from supervit.supervisor import _ingest

    monkeypatch.setattr(_ingest, "_UPDATE_FROM", update_from)
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    await asyncio.gather(*(node.report(power=i % 6, realm_sync_version=i) for i in range(30)))
    await node.report(power=1, realm_sync_version=77)
    other = NodeSim(channel_to(sup.address), "n2")
    await other.register()
    await other.report(power=5, realm_sync_version=3)
    await sup.ingest.flush()
    record = await sup.registry.get("n1")
    assert record is not None and record.reports == 31
    assert (record.power_reserve_level, record.realm_sync_version) == (1, 77)
    assert record.last_report_at is not None and record.last_seen_at == record.last_report_at
    assert record.metrics is not None and record.metrics.cpu_usage_percent == 12.5
    second = await sup.registry.get("n2")
    assert second is not None and (second.reports, second.power_reserve_level, second.realm_sync_version) == (1, 5, 3)


async def test_directive_queued_mid_stream_is_delivered_once(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """A directive queued while the node is on the fast path rides the very next report, once."""
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    for _ in range(3):
        assert not (await node.report()).HasField("directive")
    await sup.directives.enqueue("n1", supervisor_pb2.REQUEST_FULL_REPORT)
    responses = await asyncio.gather(*(node.report() for _ in range(10)))
    assert sum(r.HasField("directive") for r in responses) == 1
    assert not (await node.report()).HasField("directive")


async def test_unknown_node_is_not_found_even_after_restart_with_empty_registry(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    first = await started(make_config(tmp_path))
    node = NodeSim(channel_to(first.address), "n1")
    await node.register()
    await node.report()
    await first.stop(0)
    fresh = await started(make_config(tmp_path, server={"data_dir": str(tmp_path / "empty")}))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await NodeSim(channel_to(fresh.address), "n1").report()
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_recent_nonces_forget_expired_entries() -> None:
    nonces = RecentNonces()
    assert nonces.consume("a", 10, now=0)
    assert not nonces.consume("a", 10, now=5)
    assert nonces.consume("b", 20, now=5) and len(nonces) == 2
    assert nonces.consume("a", 30, now=11)  # expired at 10: forgotten, so accepted again
    assert len(nonces) == 2


async def test_a_schema_4_database_is_upgraded_keeping_its_report_log(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """Issue 13: schema 5 renames ``nonce_batches`` to ``report_log``. A file the previous version
    left (unfolded reports in the log) is upgraded in place: the reports are folded, their nonces
    are still refused."""
    config = make_config(tmp_path)
    sup = await started(config)
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    report = node.report_request(power=3, realm_sync_version=7)
    await node.stub.Report(report)
    old = tmp_path / "schema4"
    old.mkdir()
    with (
        sqlite3.connect(config.server.data_dir / SUPERVISOR_DB_FILENAME) as live,
        sqlite3.connect(old / SUPERVISOR_DB_FILENAME) as copy,
    ):
        live.backup(copy)  # what a crash leaves: the report is in the log only
        copy.executescript(
            "ALTER TABLE report_log RENAME TO nonce_batches;"
            " DROP INDEX report_log_expires_at;"
            " CREATE INDEX nonce_batches_expires_at ON nonce_batches (expires_at);"
            # The per-row nonce table schema 6 folds into the log.
            " CREATE TABLE nonces (nonce TEXT PRIMARY KEY NOT NULL, expires_at INTEGER NOT NULL) STRICT, WITHOUT ROWID;"
            " CREATE INDEX nonces_expires_at ON nonces (expires_at);"
            " PRAGMA user_version = 4;"
        )
        assert copy.execute("SELECT reports FROM nodes").fetchone() == (0,)
    upgraded = await started(make_config(tmp_path, server={"data_dir": str(old)}))
    await _folded_and_refused(upgraded, channel_to, report, (1, 3, 7))
    with sqlite3.connect(old / SUPERVISOR_DB_FILENAME) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    assert "report_log" in tables and "nonce_batches" not in tables and version == SUPERVISOR_MIGRATIONS[-1].version


async def test_a_schema_6_report_log_is_upgraded_and_its_json_reports_are_folded(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """Schema 7 stores a log row's reports as received (a BLOB). A file schema 6 left, with a report
    acknowledged but not folded (JSON text, as that version wrote it), is upgraded in place: the
    report is folded, its nonce is still refused, and new rows are BLOBs."""
    config = make_config(tmp_path)
    sup = await started(config)
    node = NodeSim(channel_to(sup.address), "n1")
    await node.register()
    await sup.stop(0)
    report = node.report_request(power=4, realm_sync_version=9)
    legacy = [
        report.name, report.location_tag, report.version,
        base64.b64encode(encode_without_credential(report)).decode(),
        int(time.time()), report.power_reserve_level, report.realm_sync_version, 5, report.node_id,
    ]  # fmt: skip
    with sqlite3.connect(config.server.data_dir / SUPERVISOR_DB_FILENAME) as conn:
        conn.executescript(
            "DROP INDEX report_log_expires_at;"
            " ALTER TABLE report_log RENAME TO report_log_v7;"
            " CREATE TABLE report_log (batch_id INTEGER PRIMARY KEY, expires_at INTEGER NOT NULL,"
            " nonces TEXT NOT NULL, reports TEXT) STRICT;"
            " INSERT INTO report_log SELECT * FROM report_log_v7 WHERE typeof(reports) != 'blob';"
            " DROP TABLE report_log_v7;"
            " CREATE INDEX report_log_expires_at ON report_log (expires_at);"
            " PRAGMA user_version = 6;"
        )
        conn.execute(
            "INSERT INTO report_log (expires_at, nonces, reports) VALUES (?, ?, ?)",
            (2**40, json.dumps([report.credential.nonce]), json.dumps([legacy])),
        )
    upgraded = await started(config)
    again = await _folded_and_refused(upgraded, channel_to, report, (1, 4, 9))
    await again.report(power=2)
    with sqlite3.connect(config.server.data_dir / SUPERVISOR_DB_FILENAME) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        kinds = [kind for (kind,) in conn.execute("SELECT typeof(reports) FROM report_log ORDER BY batch_id")]
    assert version == SUPERVISOR_MIGRATIONS[-1].version >= 7
    assert kinds[-1] == "blob" and "text" in kinds  # the JSON row is kept until it expires


async def _folded_and_refused(
    sup: Any, channel_to: Channels, report: supervisor_pb2.ReportRequest, expected: tuple[int, int, int]
) -> NodeSim:
    """After an upgrade: node n1's logged report is folded (reports, power, realm sync version are
    ``expected``) and its nonce is still refused. Returns the node, to report again."""
    record = await sup.registry.get("n1")
    assert record is not None and (record.reports, record.power_reserve_level, record.realm_sync_version) == expected
    again = NodeSim(channel_to(sup.address), "n1")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await again.stub.Report(report)
    assert info.value.details() == "nonce already used"
    return again
