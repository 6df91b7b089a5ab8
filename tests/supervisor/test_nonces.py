"""Issue 13: one replay window and one nonce table for every credential the SQLite supervisor checks.

RegisterNode, Report (either path), HealthCheck and admin calls consume through the ingest's
in-memory window and are remembered in ``report_log`` rows, loaded back at start-up; schema 6
moves what the older per-row ``nonces`` table held into the log.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from supervit.auth import Action, SharedSecret, Signer, build_payload, registration_fingerprint
from supervit.protocol import supervisor_pb2, supervit_admin_pb2, supervit_admin_pb2_grpc
from supervit.storage import Database
from supervit.supervisor import (
    SUPERVISOR_DB_FILENAME,
    SUPERVISOR_MIGRATIONS,
    IngestNonceStorage,
    NodeRegistry,
    ReportIngest,
    admin_payload,
    open_supervisor_database,
)
from tests.supervisor.conftest import ADMIN_HEX, NodeSim, make_config

Started = Callable[..., Any]
Channels = Callable[[str], grpc.aio.Channel]


def _registration(node: NodeSim, nonce: str) -> supervisor_pb2.RegisterNodeRequest:
    request = node.register_request()
    payload = build_payload(Action.REGISTER, node.node_id, registration_fingerprint(request))
    request.credential.CopyFrom(node.signer.credential(payload, nonce=nonce))
    return request


def _report(node: NodeSim, nonce: str) -> supervisor_pb2.ReportRequest:
    request = node.report_request()
    payload = f"report:{node.node_id}:{request.timestamp}"
    request.credential.CopyFrom(node.signer.credential(payload, timestamp=request.timestamp, nonce=nonce))
    return request


def _admin_listing(nonce: str | None = None) -> supervit_admin_pb2.ListNodesRequest:
    request = supervit_admin_pb2.ListNodesRequest()
    request.credential.CopyFrom(
        Signer(SharedSecret.from_hex(ADMIN_HEX)).credential(admin_payload(request), nonce=nonce)
    )
    return request


async def _refused(call: Any, request: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(request)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.UNAUTHENTICATED, "nonce already used")


def _tables(db_path: Path) -> set[str]:
    with sqlite3.connect(db_path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


async def test_every_accepted_nonce_is_refused_in_every_rpc_also_after_a_restart(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """The nonce of a registration, a logged report, a report with a directive (its own
    transaction), an unknown node's report, a health check and an admin call: each is refused
    as any other RPC, before and after a restart on the same file."""
    config = make_config(tmp_path)
    sup = await started(config)
    node = NodeSim(channel_to(sup.address), "n1")
    admin = supervit_admin_pb2_grpc.SupervisorAdminStub(channel_to(sup.admin_address))
    registration = node.register_request()
    assert (await node.stub.RegisterNode(registration)).success
    logged = node.report_request()  # the report log's path
    assert (await node.stub.Report(logged)).received
    await sup.directives.enqueue("n1", supervisor_pb2.REQUEST_FULL_REPORT)
    with_directive = node.report_request()  # its own transaction: delivery and dequeue together
    assert (await node.stub.Report(with_directive)).directive.type == supervisor_pb2.REQUEST_FULL_REPORT
    ghost = NodeSim(channel_to(sup.address), "ghost")
    unknown = ghost.report_request()  # its own transaction too: NOT_FOUND is authoritative
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await ghost.stub.Report(unknown)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    health = supervisor_pb2.HealthCheckRequest(node_id="n1")
    health.credential.CopyFrom(node.signer.credential("health_check:n1"))
    await node.stub.HealthCheck(health)
    listing = _admin_listing()
    await admin.ListNodes(listing)
    accepted = [
        registration.credential.nonce,
        logged.credential.nonce,
        with_directive.credential.nonce,
        unknown.credential.nonce,
        health.credential.nonce,
        listing.credential.nonce,
    ]

    async def all_refused(node: NodeSim, admin: supervit_admin_pb2_grpc.SupervisorAdminStub) -> None:
        for nonce in accepted:
            await _refused(node.stub.RegisterNode, _registration(node, nonce))
            await _refused(node.stub.Report, _report(node, nonce))
            await _refused(admin.ListNodes, _admin_listing(nonce))
        await _refused(node.stub.RegisterNode, registration)
        await _refused(node.stub.Report, with_directive)
        await _refused(node.stub.Report, unknown)  # a replay, not NOT_FOUND again

    await all_refused(node, admin)
    await sup.stop(0)

    db_path = config.server.data_dir / SUPERVISOR_DB_FILENAME
    assert "nonces" not in _tables(db_path)  # one table remembers them all
    again = await started(config)
    node = NodeSim(channel_to(again.address), "n1")
    await all_refused(node, supervit_admin_pb2_grpc.SupervisorAdminStub(channel_to(again.admin_address)))
    assert (await node.register()).success and (await node.report()).received  # fresh nonces pass


async def test_a_nonce_store_failure_is_internal_never_an_accept(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """While the file refuses writes, RegisterNode, a report with a directive and an admin call
    answer INTERNAL; nothing is recorded, the directive stays queued, and the nonces that were
    not stored stay refused."""
    sup = await started(make_config(tmp_path))
    node = NodeSim(channel_to(sup.address), "n1")
    admin = supervit_admin_pb2_grpc.SupervisorAdminStub(channel_to(sup.admin_address))
    assert (await node.register()).success
    await sup.directives.enqueue("n1", supervisor_pb2.REQUEST_FULL_REPORT)
    conn = sup.store.database._conn
    conn.execute("PRAGMA query_only = ON")  # every write fails: "attempt to write a readonly database"
    registration = node.register_request(name="renamed")
    report = node.report_request(power=1)
    listing = _admin_listing()
    for call, request in (
        (node.stub.RegisterNode, registration),
        (node.stub.Report, report),
        (admin.ListNodes, listing),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(request)
        assert info.value.code() == grpc.StatusCode.INTERNAL
    conn.execute("PRAGMA query_only = OFF")
    await _refused(node.stub.RegisterNode, registration)
    await _refused(node.stub.Report, report)
    await _refused(admin.ListNodes, listing)
    record = await sup.registry.get("n1")
    assert record is not None and record.name == "n1 name" and record.reports == 0
    assert (await node.report()).directive.type == supervisor_pb2.REQUEST_FULL_REPORT


async def _store_on(db: Database, now: float) -> tuple[ReportIngest, IngestNonceStorage]:
    ingest = ReportIngest(NodeRegistry(db, clock=lambda: now), clock=lambda: now)
    await ingest.load()
    return ingest, IngestNonceStorage(ingest)


async def test_count_adds_every_remembered_nonce(tmp_path: Path) -> None:
    """count(): the nonces of credentials, of logged reports and of own-transaction reports."""
    db = await open_supervisor_database(tmp_path)
    try:
        ingest, nonces = await _store_on(db, 1000.0)
        assert await nonces.count() == 0
        assert await nonces.consume("admin-1", 2000) and await nonces.consume("register-1", 2000)
        assert not await nonces.consume("admin-1", 2000)
        request = supervisor_pb2.ReportRequest(node_id="ghost", timestamp=1000, name="", location_tag="", version="")
        assert await ingest.report(request, nonce="report-1", nonce_expires_at=2000, interval_secs=5) is None

        def log_reports(conn: sqlite3.Connection) -> None:
            sql = "INSERT INTO report_log (expires_at, nonces, reports) VALUES (?, ?, NULL)"
            conn.execute(sql, (2000, '["r-1", "r-2", "r-3"]'))

        await db.write(log_reports)
        assert await nonces.count() == 6
        assert nonces.remembered == 3  # this process's window; a restart loads all six
        _, reloaded = await _store_on(db, 1000.0)
        assert reloaded.remembered == 6
        assert not await reloaded.consume("report-1", 2000) and not await reloaded.consume("r-2", 2000)
    finally:
        await db.close()


async def test_cleanup_forgets_expired_rows_in_small_chunks_and_keeps_unfolded_reports(tmp_path: Path) -> None:
    """Expired rows go when folded or holding nonces only, in several short statements; an
    expired row with unfolded reports, a live row and the newest row stay."""
    db = await open_supervisor_database(tmp_path)
    try:
        sql = "INSERT INTO report_log (batch_id, expires_at, nonces, reports) VALUES (?, ?, ?, ?)"

        def fill(conn: sqlite3.Connection) -> None:
            conn.executemany(sql, [(i, 10, '["a", "b"]', "[]") for i in range(1, 251)])  # expired, folded
            conn.execute(sql, (251, 2**40, '["live"]', "[]"))  # live, folded
            conn.execute(sql, (252, 10, '["unfolded"]', "[]"))  # expired, its reports not folded yet
            conn.execute(sql, (253, 10, '["nonce-only"]', None))  # expired, nothing to fold
            conn.execute(sql, (254, 10, '["newest"]', None))  # expired, but the next id depends on it
            conn.execute("UPDATE meta SET value = 251 WHERE key = 'reports_folded_through'")

        await db.write(fill)
        nonces = IngestNonceStorage(ReportIngest(NodeRegistry(db), clock=lambda: 1000.0))
        assert await nonces.count() == 504
        writes: list[int] = []
        write = db.write

        async def counted(*args: Any, **kwargs: Any) -> Any:
            writes.append(1)
            return await write(*args, **kwargs)

        db.write = counted  # type: ignore[method-assign]
        assert await nonces.cleanup() == 501
        left = await db.read(lambda c: [r[0] for r in c.execute("SELECT batch_id FROM report_log ORDER BY 1")])
        assert left == [251, 252, 254]
        assert len(writes) >= 3  # 251 rows never go in one statement
        assert await nonces.count() == 3
        assert await nonces.cleanup() == 0
    finally:
        await db.close()


async def test_an_upgrade_keeps_the_old_per_row_nonces_refused(
    tmp_path: Path, started: Started, channel_to: Channels
) -> None:
    """A schema-5 file with nonces in the per-row table: schema 6 moves them into the report log,
    so an unexpired one is still refused (as RegisterNode and as Report) and the table is gone;
    an expired one is forgotten and cleaned up."""
    config = make_config(tmp_path)
    db_path = config.server.data_dir / SUPERVISOR_DB_FILENAME
    config.server.data_dir.mkdir(parents=True)
    old = await Database.open(db_path, SUPERVISOR_MIGRATIONS[:5])
    now = int(time.time())

    def remember(conn: sqlite3.Connection) -> None:
        sql = "INSERT INTO nonces (nonce, expires_at) VALUES (?, ?)"
        conn.executemany(sql, [("old-live", now + 900), ("old-live-2", now + 900), ("old-expired", now - 10)])

    await old.write(remember)
    await old.close()

    sup = await started(config)
    node = NodeSim(channel_to(sup.address), "n1")
    await _refused(node.stub.RegisterNode, _registration(node, "old-live"))
    assert (await node.register()).success
    await _refused(node.stub.Report, _report(node, "old-live"))
    await _refused(node.stub.Report, _report(node, "old-live-2"))
    assert (await node.stub.RegisterNode(_registration(node, "old-expired"))).success
    assert "nonces" not in _tables(db_path)
    with sqlite3.connect(db_path) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    assert version == SUPERVISOR_MIGRATIONS[-1].version >= 6
    nonces = sup.store.nonces
    assert isinstance(nonces, IngestNonceStorage)
    before = await nonces.count()
    assert await nonces.cleanup() == 1  # the moved expired nonce; its row holds nothing else
    assert await nonces.count() == before - 1
