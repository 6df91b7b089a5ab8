"""The node registry: every registered node, its latest report, liveness and catalog sync state.

Persisted in ``supervisor.db`` (see :mod:`supervit.supervisor._schema`), so it survives restarts.
Nodes are never deleted: one that misses ``offline_after_missed`` report intervals is *marked*
offline by :meth:`NodeRegistry.mark_offline` and is online again with its next report.

:meth:`NodeRegistry.ingest_report` remembers a report's nonce, records the report and takes the
node's next directive in one write (one group-commit round trip, one transaction); all protobuf
work happens on the event loop before it. It is the path of reports that must commit with their
directive (or prove the node unknown); the others take :class:`~supervit.supervisor.ReportIngest`'s
report log. Either way the nonce was checked first against the ingest's in-memory window.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from supervit.protocol import common_pb2, supervisor_pb2
from supervit.storage import Database
from supervit.supervisor._directives import QueuedDirective, adjusted_interval, take_next

__all__ = [
    "FleetCounts",
    "NodeRecord",
    "NodeRegistry",
    "Registration",
    "ReportOutcome",
    "encode_without_credential",
    "rows_leniently",
]

log = logging.getLogger("supervit.supervisor")

_COLUMNS = (
    "node_id, name, location_tag, version, agent_addr, fingerprint, registration, first_registered_at, "
    "registered_at, registrations, last_seen_at, online, offline_since, report_interval_secs, interval_override, "
    "last_report_at, last_report, reports, power_reserve_level, realm_sync_version, pushed_catalog_version, "
    "last_push_at, last_push_error, stopped_at"
)
_PENDING = "(SELECT COUNT(*) FROM directives d WHERE d.node_id = nodes.node_id)"

# A re-registration keeps first_registered_at, the report history, the push bookkeeping and an
# ADJUST_INTERVAL override; everything the node declares is replaced.
_REGISTER_SQL = """
INSERT INTO nodes (node_id, name, location_tag, version, agent_addr, fingerprint, registration,
                   first_registered_at, registered_at, last_seen_at, report_interval_secs)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (node_id) DO UPDATE SET
    name = excluded.name, location_tag = excluded.location_tag, version = excluded.version,
    agent_addr = excluded.agent_addr, fingerprint = excluded.fingerprint,
    registration = excluded.registration, registered_at = excluded.registered_at,
    registrations = registrations + 1, last_seen_at = excluded.last_seen_at,
    online = 1, offline_since = NULL, stopped_at = NULL,
    report_interval_secs = COALESCE(interval_override, excluded.report_interval_secs)
RETURNING first_registered_at, COALESCE(interval_override, report_interval_secs), interval_override,
          pushed_catalog_version
"""

_REPORT_SQL = """
UPDATE nodes SET
    name = ?, location_tag = ?, version = ?, last_report = ?, last_report_at = ?, last_seen_at = ?,
    reports = reports + 1, power_reserve_level = ?, realm_sync_version = ?, online = 1,
    offline_since = NULL, stopped_at = NULL, interval_override = ?, report_interval_secs = ?
WHERE node_id = ?
RETURNING agent_addr, pushed_catalog_version
"""

# The nonce of a report that commits in its own transaction: a report-log row of its own that
# acknowledges no logged report (so the fold skips it), the one table every accepted nonce is in.
_LOG_NONCE_SQL = "INSERT INTO report_log (expires_at, nonces, reports) VALUES (?, ?, NULL)"

_OFFLINE_SQL = """
UPDATE nodes SET online = 0, offline_since = ?
WHERE online = 1 AND last_seen_at + ? * COALESCE(interval_override, report_interval_secs) < ?
RETURNING node_id
"""


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """One node as the registry knows it. Times are Unix seconds on the supervisor's clock."""

    node_id: str
    name: str
    location_tag: str
    version: str
    agent_addr: str
    fingerprint: str
    registration: supervisor_pb2.RegisterNodeRequest
    """The latest RegisterNodeRequest as received, without its credential."""
    first_registered_at: int
    registered_at: int
    registrations: int
    last_seen_at: int
    online: bool
    offline_since: int | None
    report_interval_secs: int
    """The interval the node was last told (an ADJUST_INTERVAL override included)."""
    interval_override: int | None
    last_report_at: int | None
    last_report: supervisor_pb2.ReportRequest | None
    """The latest ReportRequest as received, without its credential."""
    reports: int
    power_reserve_level: int | None
    realm_sync_version: int
    pushed_catalog_version: int
    last_push_at: int | None
    last_push_error: str | None
    pending_directives: int
    stopped_at: int | None = None
    """When the node left on purpose (its final report said so); None otherwise."""

    @property
    def state(self) -> str:
        """``"online"``, ``"stopped"`` (it said it was leaving) or ``"offline"`` (missed reports)."""
        if self.online:
            return "online"
        return "stopped" if self.stopped_at is not None else "offline"

    @property
    def metrics(self) -> common_pb2.SystemMetrics | None:
        """The latest reported system metrics, if any."""
        if self.last_report is None or not self.last_report.HasField("metrics"):
            return None
        return self.last_report.metrics

    @property
    def services(self) -> Sequence[common_pb2.ServiceStatus]:
        """The latest reported service statuses."""
        return () if self.last_report is None else self.last_report.services

    @property
    def advertised_services(self) -> Sequence[supervisor_pb2.ServiceAdvertisement]:
        return self.registration.services


@dataclass(frozen=True, slots=True)
class ReportOutcome:
    """What a report was recorded with and what its response must carry."""

    interval_secs: int
    directive: QueuedDirective | None
    agent_addr: str
    pushed_catalog_version: int
    interval_override: int | None = None


@dataclass(frozen=True, slots=True)
class Registration:
    """What :meth:`NodeRegistry.register` recorded (times are Unix seconds)."""

    registered_at: int
    first_registered_at: int
    interval_secs: int
    """The report interval in force (an ADJUST_INTERVAL override survives re-registration)."""
    interval_override: int | None
    pushed_catalog_version: int
    agent_addr: str


def encode_without_credential(message: supervisor_pb2.RegisterNodeRequest | supervisor_pb2.ReportRequest) -> bytes:
    """The message as stored in the registry: encoded without its credential."""
    copy: Any = type(message)()
    copy.CopyFrom(message)
    copy.ClearField("credential")
    # Fields this version does not know would be stored verbatim: keep only what it can show.
    copy.DiscardUnknownFields()
    # The credential is gone, so required-field checks would fail: store the partial encoding.
    blob: bytes = copy.SerializePartialToString()
    return blob


def _lenient_text(raw: bytes) -> str | bytes:
    # A TEXT value that is not UTF-8 (written by an older version) comes back as bytes, so the
    # row it belongs to is quarantined by _record instead of failing the whole query.
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw


def rows_leniently(conn: sqlite3.Connection, sql: str, params: Sequence[object] = ()) -> list[Any]:
    """Run a query whose TEXT values that are not UTF-8 come back as bytes (rather than failing it)."""
    previous = conn.text_factory
    conn.text_factory = _lenient_text
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.text_factory = previous


_TEXT_COLUMNS = ("node_id", "name", "location_tag", "version", "agent_addr", "fingerprint")


def _records(rows: list[Any]) -> list[NodeRecord]:
    """The rows that can be read; any other is quarantined: logged with its node, left out."""
    records: list[NodeRecord] = []
    for row in rows:
        try:
            records.append(_record(row))
        except Exception as exc:
            log.error("quarantined registry row of node %r: it cannot be read (%s); left out", row[0], exc)
    return records


def _record(row: Any) -> NodeRecord:
    for name, value in zip(_TEXT_COLUMNS, row, strict=False):
        if not isinstance(value, str):
            raise ValueError(f"column {name} is not valid UTF-8 text")
    if row[22] is not None and not isinstance(row[22], str):
        raise ValueError("column last_push_error is not valid UTF-8 text")
    (
        node_id,
        name,
        location_tag,
        version,
        agent_addr,
        fingerprint,
        registration,
        first_registered_at,
        registered_at,
        registrations,
        last_seen_at,
        online,
        offline_since,
        report_interval_secs,
        interval_override,
        last_report_at,
        last_report,
        reports,
        power_reserve_level,
        realm_sync_version,
        pushed_catalog_version,
        last_push_at,
        last_push_error,
        stopped_at,
        pending,
    ) = row
    reg = supervisor_pb2.RegisterNodeRequest()
    reg.ParseFromString(registration)
    report: supervisor_pb2.ReportRequest | None = None
    if last_report is not None:
        report = supervisor_pb2.ReportRequest()
        report.ParseFromString(last_report)
    return NodeRecord(
        node_id=str(node_id),
        name=str(name),
        location_tag=str(location_tag),
        version=str(version),
        agent_addr=str(agent_addr),
        fingerprint=str(fingerprint),
        registration=reg,
        first_registered_at=int(first_registered_at),
        registered_at=int(registered_at),
        registrations=int(registrations),
        last_seen_at=int(last_seen_at),
        online=bool(online),
        offline_since=None if offline_since is None else int(offline_since),
        report_interval_secs=int(report_interval_secs),
        interval_override=None if interval_override is None else int(interval_override),
        last_report_at=None if last_report_at is None else int(last_report_at),
        last_report=report,
        reports=int(reports),
        power_reserve_level=None if power_reserve_level is None else int(power_reserve_level),
        realm_sync_version=int(realm_sync_version),
        pushed_catalog_version=int(pushed_catalog_version),
        last_push_at=None if last_push_at is None else int(last_push_at),
        last_push_error=None if last_push_error is None else str(last_push_error),
        pending_directives=int(pending),
        stopped_at=None if stopped_at is None else int(stopped_at),
    )


@dataclass(frozen=True, slots=True)
class FleetCounts:
    """What :meth:`NodeRegistry.fleet_counts` found."""

    online: int
    offline: int
    behind: int
    directives_pending: int
    stopped: int = 0
    """Nodes that left on purpose (not counted in ``offline``)."""


_FLEET_SQL = """
SELECT SUM(online), SUM(CASE WHEN online = 0 AND stopped_at IS NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN online = 0 AND stopped_at IS NOT NULL THEN 1 ELSE 0 END),
       SUM(CASE WHEN realm_sync_version < ? OR pushed_catalog_version < ? THEN 1 ELSE 0 END)
FROM nodes
"""


class NodeRegistry:
    """Registered nodes in the supervisor database.

    ``db`` must be at the supervisor schema (:func:`open_supervisor_database`); ``clock`` gives
    Unix seconds and is injectable so tests can drive offline detection.
    """

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self.read_barrier: Callable[[], Awaitable[None]] | None = None
        """Awaited before every read of the node rows and before the offline sweep. The report
        ingest, the one owner of acknowledged-but-unfolded reports, sets it to its fold
        (:meth:`ReportIngest.flush`), so no reader sees or judges by a row older than a report
        already acknowledged."""

    @property
    def database(self) -> Database:
        return self._db

    async def _folded(self) -> None:
        if self.read_barrier is not None:
            await self.read_barrier()

    async def register(
        self, request: supervisor_pb2.RegisterNodeRequest, fingerprint: str, *, report_interval_secs: int
    ) -> Registration:
        """Record a (re-)registration; the node is online from now on."""
        now = int(self._clock())
        params = (
            request.node_id,
            request.name,
            request.location_tag,
            request.version,
            request.agent_addr,
            fingerprint,
            encode_without_credential(request),
            now,
            now,
            now,
            report_interval_secs,
        )

        def run(conn: sqlite3.Connection) -> Registration:
            first, interval, override, pushed = conn.execute(_REGISTER_SQL, params).fetchone()
            return Registration(now, int(first), int(interval), override, int(pushed), request.agent_addr)

        return await self._db.write(run, single_statement=True)

    async def ingest_report(
        self,
        request: supervisor_pb2.ReportRequest,
        *,
        nonce: str,
        nonce_expires_at: int,
        interval_secs: int,
    ) -> ReportOutcome | None:
        """Remember ``nonce``, record the report, take the next directive: one transaction.

        The nonce must already have been checked and consumed in the supervisor's one replay
        window (:class:`~supervit.supervisor.ReportIngest`, the only caller); this writes it to the
        report log with the report, so it is refused after a restart too. Returns None when the
        node is not registered (its nonce is remembered all the same, so the request cannot be
        replayed). ``interval_secs`` is the configured interval, used unless an ADJUST_INTERVAL
        override is in force (a delivered ADJUST_INTERVAL sets a new override). Raises
        :class:`StorageError` if the database failed (nothing was recorded then).
        """
        now = int(self._clock())
        node_id = request.node_id
        blob = encode_without_credential(request)
        head = (request.name, request.location_tag, request.version, blob, now, now)
        tail = (request.power_reserve_level, request.realm_sync_version)

        logged = json.dumps([nonce])

        def run(conn: sqlite3.Connection) -> ReportOutcome | None:
            conn.execute(_LOG_NONCE_SQL, (nonce_expires_at, logged))
            row = conn.execute("SELECT interval_override FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
            if row is None:
                return None
            directive = take_next(conn, node_id)
            override = adjusted_interval(directive) or row[0]
            interval = int(override) if override is not None else interval_secs
            agent_addr, pushed = conn.execute(_REPORT_SQL, (*head, *tail, override, interval, node_id)).fetchone()
            return ReportOutcome(interval, directive, str(agent_addr), int(pushed), override)

        return await self._db.write(run)

    async def get(self, node_id: str) -> NodeRecord | None:
        """The node, or None if it never registered."""
        await self._folded()

        def run(conn: sqlite3.Connection) -> NodeRecord | None:
            rows = rows_leniently(conn, f"SELECT {_COLUMNS}, {_PENDING} FROM nodes WHERE node_id = ?", (node_id,))
            found = _records(rows)
            return found[0] if found else None

        return await self._db.read(run)

    async def nodes(self) -> list[NodeRecord]:
        """Every node ever registered, by node id."""
        await self._folded()

        def run(conn: sqlite3.Connection) -> list[NodeRecord]:
            return _records(rows_leniently(conn, f"SELECT {_COLUMNS}, {_PENDING} FROM nodes ORDER BY node_id"))

        return await self._db.read(run)

    async def nodes_page(self, after: str | None, limit: int) -> tuple[list[NodeRecord], str | None]:
        """The next ``limit`` rows after id ``after`` by node id (the primary key's byte order)."""
        await self._folded()

        def run(conn: sqlite3.Connection) -> tuple[list[NodeRecord], str | None]:
            sql = f"SELECT {_COLUMNS}, {_PENDING} FROM nodes WHERE node_id > ? ORDER BY node_id LIMIT ?"
            rows = rows_leniently(conn, sql, ("" if after is None else after, limit))
            cursor = rows[-1][0] if len(rows) == limit else None
            return _records(rows), cursor if isinstance(cursor, str) else None

        return await self._db.read(run)

    async def count_nodes(self) -> int:
        """How many nodes are registered."""
        await self._folded()

        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT COUNT(*) FROM nodes").fetchone()[0])

        return await self._db.read(run)

    async def fleet_counts(self, catalog_version: int, live_version: int) -> FleetCounts:
        """Nodes online, offline and stopped, nodes behind the catalog, directives queued: one read.

        A node is behind when its reported realm version is below ``live_version`` or its last
        confirmed push below ``catalog_version`` (the pusher's rule, :class:`CatalogPusher`).
        """
        await self._folded()

        def run(conn: sqlite3.Connection) -> FleetCounts:
            online, offline, stopped, behind = conn.execute(_FLEET_SQL, (live_version, catalog_version)).fetchone()
            (directives,) = conn.execute("SELECT COUNT(*) FROM directives").fetchone()
            return FleetCounts(
                int(online or 0), int(offline or 0), int(behind or 0), int(directives), stopped=int(stopped or 0)
            )

        return await self._db.read(run)

    async def mark_offline(self, missed: int = 3) -> list[str]:
        """Mark online nodes silent for more than ``missed`` of their intervals offline.

        Returns the ids that just went offline. Their rows stay; a report brings them back.
        """
        await self._folded()
        now = int(self._clock())

        def run(conn: sqlite3.Connection) -> list[str]:
            return sorted(str(row[0]) for row in conn.execute(_OFFLINE_SQL, (now, missed, now)))

        return await self._db.write(run, single_statement=True)

    async def nodes_behind(self, live_version: int, catalog_version: int) -> list[tuple[str, str, int, int]]:
        """Online nodes that report fewer realms than the catalog holds or were not pushed its
        latest change: (node_id, agent_addr, realm_sync_version, pushed_catalog_version)."""
        await self._folded()

        def run(conn: sqlite3.Connection) -> list[tuple[str, str, int, int]]:
            sql = (
                "SELECT node_id, agent_addr, realm_sync_version, pushed_catalog_version FROM nodes "
                "WHERE online = 1 AND (realm_sync_version < ? OR pushed_catalog_version < ?) ORDER BY node_id"
            )
            rows = conn.execute(sql, (live_version, catalog_version))
            return [(str(a), str(b), int(c), int(d)) for a, b, c, d in rows]

        return await self._db.read(run)

    async def mark_stopped(self, node_id: str) -> bool:
        """Record that the node left on purpose: state ``stopped`` until it registers or reports again.

        Returns False if the node is not registered.
        """
        now = int(self._clock())

        def run(conn: sqlite3.Connection) -> bool:
            sql = "UPDATE nodes SET online = 0, offline_since = ?, stopped_at = ? WHERE node_id = ?"
            return conn.execute(sql, (now, now, node_id)).rowcount == 1

        return await self._db.write(run, single_statement=True)

    async def record_push(self, node_id: str, *, pushed_version: int | None, error: str | None) -> None:
        """Note a catalog push outcome: success advances ``pushed_catalog_version``, failure keeps it."""
        now = int(self._clock())

        def run(conn: sqlite3.Connection) -> None:
            if pushed_version is None:
                sql = "UPDATE nodes SET last_push_at = ?, last_push_error = ? WHERE node_id = ?"
                conn.execute(sql, (now, error, node_id))
            else:
                sql = (
                    "UPDATE nodes SET last_push_at = ?, last_push_error = NULL, "
                    "pushed_catalog_version = MAX(pushed_catalog_version, ?) WHERE node_id = ?"
                )
                conn.execute(sql, (now, pushed_version, node_id))

        await self._db.write(run, single_statement=True)
