"""The node registry and directive queues on PostgreSQL (shared by every replica).

Same rows and rules as the SQLite registry (:mod:`supervit.supervisor._registry`); reports are
written by :mod:`supervit.supervisor._pg_ingest`, which also hands directives over.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from supervit._exceptions import NotFoundError
from supervit.protocol import supervisor_pb2
from supervit.supervisor._directives import QueuedDirective, validate_directive
from supervit.supervisor._pg_pool import PgPool
from supervit.supervisor._registry import (
    FleetCounts,
    NodeRecord,
    Registration,
    _records,
    encode_without_credential,
)

__all__ = ["PgDirectiveQueue", "PgRegistry"]

_COLUMNS = (
    "node_id, name, location_tag, version, agent_addr, fingerprint, registration, first_registered_at, "
    "registered_at, registrations, last_seen_at, online, offline_since, report_interval_secs, interval_override, "
    "last_report_at, last_report, reports, power_reserve_level, realm_sync_version, pushed_catalog_version, "
    "last_push_at, last_push_error, stopped_at, (SELECT COUNT(*) FROM directives d WHERE d.node_id = nodes.node_id)"
)

# A re-registration keeps first_registered_at, the report history, the push bookkeeping and an
# ADJUST_INTERVAL override; everything the node declares is replaced (as on SQLite).
_REGISTER_SQL = """
INSERT INTO nodes (node_id, name, location_tag, version, agent_addr, fingerprint, registration,
                   first_registered_at, registered_at, last_seen_at, report_interval_secs)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8, $9)
ON CONFLICT (node_id) DO UPDATE SET
    name = excluded.name, location_tag = excluded.location_tag, version = excluded.version,
    agent_addr = excluded.agent_addr, fingerprint = excluded.fingerprint,
    registration = excluded.registration, registered_at = excluded.registered_at,
    registrations = nodes.registrations + 1, last_seen_at = excluded.last_seen_at,
    online = TRUE, offline_since = NULL, stopped_at = NULL,
    report_interval_secs = COALESCE(nodes.interval_override, excluded.report_interval_secs)
RETURNING first_registered_at, COALESCE(interval_override, report_interval_secs), interval_override,
          pushed_catalog_version
"""

_OFFLINE_SQL = """
UPDATE nodes SET online = FALSE, offline_since = $1
WHERE online AND last_seen_at + $2 * COALESCE(interval_override, report_interval_secs) < $1
RETURNING node_id
"""


class PgRegistry:
    """:class:`~supervit.supervisor.RegistryStore` on PostgreSQL."""

    def __init__(self, db: PgPool, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        self.read_barrier: Callable[[], Awaitable[None]] | None = None
        """Awaited before reads of the node rows and the offline sweep (the ingest sets it: its
        statements in flight settle first), as :attr:`NodeRegistry.read_barrier`."""

    async def _folded(self) -> None:
        if self.read_barrier is not None:
            await self.read_barrier()

    async def register(
        self, request: supervisor_pb2.RegisterNodeRequest, fingerprint: str, *, report_interval_secs: int
    ) -> Registration:
        """Record a (re-)registration (committed before this returns)."""
        now = int(self._clock())
        async with self._db.connection("register node") as conn:
            first, interval, override, pushed = await conn.fetchrow(
                _REGISTER_SQL,
                request.node_id,
                request.name,
                request.location_tag,
                request.version,
                request.agent_addr,
                fingerprint,
                encode_without_credential(request),
                now,
                report_interval_secs,
            )
        return Registration(now, int(first), int(interval), override, int(pushed), request.agent_addr)

    async def get(self, node_id: str) -> NodeRecord | None:
        """The node, or None if it never registered."""
        await self._folded()
        async with self._db.connection("read node") as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM nodes WHERE node_id = $1", node_id)
        found = [] if row is None else _records([tuple(row)])  # an unreadable row is quarantined
        return found[0] if found else None

    async def nodes(self) -> list[NodeRecord]:
        """Every node ever registered, by node id."""
        await self._folded()
        async with self._db.connection("list nodes") as conn:
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM nodes ORDER BY node_id")
        return _records([tuple(row) for row in rows])

    async def nodes_page(self, after: str | None, limit: int) -> tuple[list[NodeRecord], str | None]:
        """The next ``limit`` rows after id ``after`` in the primary key's order (the database collation)."""
        await self._folded()
        async with self._db.connection("list nodes") as conn:
            if after is None:
                rows = await conn.fetch(f"SELECT {_COLUMNS} FROM nodes ORDER BY node_id LIMIT $1", limit)
            else:
                sql = f"SELECT {_COLUMNS} FROM nodes WHERE node_id > $1 ORDER BY node_id LIMIT $2"
                rows = await conn.fetch(sql, after, limit)
        cursor = str(rows[-1][0]) if len(rows) == limit else None
        return _records([tuple(row) for row in rows]), cursor

    async def count_nodes(self) -> int:
        """How many nodes are registered."""
        await self._folded()
        async with self._db.connection("count nodes") as conn:
            return int(await conn.fetchval("SELECT COUNT(*) FROM nodes"))

    async def mark_offline(self, missed: int = 3) -> list[str]:
        """Mark online nodes silent for more than ``missed`` of their intervals offline."""
        await self._folded()
        now = int(self._clock())
        async with self._db.connection("offline sweep") as conn:
            rows = await conn.fetch(_OFFLINE_SQL, now, missed)
        return sorted(str(row[0]) for row in rows)

    async def mark_stopped(self, node_id: str) -> bool:
        """Record that the node left on purpose: ``stopped`` until it registers or reports again."""
        now = int(self._clock())
        async with self._db.connection("mark node stopped") as conn:
            status = await conn.execute(
                "UPDATE nodes SET online = FALSE, offline_since = $1, stopped_at = $1 WHERE node_id = $2", now, node_id
            )
        return str(status).endswith(" 1")

    async def record_push(self, node_id: str, *, pushed_version: int | None, error: str | None) -> None:
        """Note a catalog push outcome: success advances ``pushed_catalog_version``, failure keeps it."""
        now = int(self._clock())
        async with self._db.connection("record push") as conn:
            if pushed_version is None:
                sql = "UPDATE nodes SET last_push_at = $1, last_push_error = $2 WHERE node_id = $3"
                await conn.execute(sql, now, error, node_id)
            else:
                sql = (
                    "UPDATE nodes SET last_push_at = $1, last_push_error = NULL, "
                    "pushed_catalog_version = GREATEST(pushed_catalog_version, $2) WHERE node_id = $3"
                )
                await conn.execute(sql, now, pushed_version, node_id)

    async def fleet_counts(self, catalog_version: int, live_version: int) -> FleetCounts:
        """Nodes online and offline, nodes behind the catalog, directives queued: one round trip."""
        await self._folded()
        sql = (
            "SELECT COUNT(*) FILTER (WHERE online), COUNT(*) FILTER (WHERE NOT online AND stopped_at IS NULL),"
            " COUNT(*) FILTER (WHERE realm_sync_version < $1 OR pushed_catalog_version < $2),"
            " (SELECT COUNT(*) FROM directives), COUNT(*) FILTER (WHERE NOT online AND stopped_at IS NOT NULL)"
            " FROM nodes"
        )
        async with self._db.connection("fleet counts") as conn:
            online, offline, behind, directives, stopped = await conn.fetchrow(sql, live_version, catalog_version)
        return FleetCounts(int(online), int(offline), int(behind), int(directives), stopped=int(stopped))

    async def nodes_behind(self, live_version: int, catalog_version: int) -> list[tuple[str, str, int, int]]:
        """Online nodes behind the catalog: (node_id, agent_addr, realm_sync_version, pushed version)."""
        await self._folded()
        sql = (
            "SELECT node_id, agent_addr, realm_sync_version, pushed_catalog_version FROM nodes "
            "WHERE online AND (realm_sync_version < $1 OR pushed_catalog_version < $2) ORDER BY node_id"
        )
        async with self._db.connection("nodes behind the catalog") as conn:
            rows = await conn.fetch(sql, live_version, catalog_version)
        return [(str(a), str(b), int(c), int(d)) for a, b, c, d in rows]


class PgDirectiveQueue:
    """:class:`~supervit.supervisor.DirectiveStore` on PostgreSQL.

    A directive leaves the queue only inside the statement that answers a report
    (``DELETE … RETURNING``, :mod:`supervit.supervisor._pg_ingest`): whichever replica a report
    reaches, a concurrent second DELETE of the same row finds it gone, so it is handed over once.
    """

    def __init__(self, db: PgPool, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def enqueue(
        self, node_id: str, directive_type: int, payload: str | None = None
    ) -> tuple[QueuedDirective, int]:
        """Queue a directive for a registered node; :class:`NotFoundError` for an unknown node."""
        stored = validate_directive(directive_type, payload)
        now = int(self._clock())
        async with self._db.transaction("enqueue directive") as conn:
            if await conn.fetchval("SELECT 1 FROM nodes WHERE node_id = $1", node_id) is None:
                raise NotFoundError("node", node_id)
            directive_id = await conn.fetchval(
                "INSERT INTO directives (node_id, type, payload, created_at) VALUES ($1, $2, $3, $4) "
                "RETURNING directive_id",
                node_id,
                directive_type,
                stored,
                now,
            )
            position = await conn.fetchval("SELECT COUNT(*) FROM directives WHERE node_id = $1", node_id)
        return QueuedDirective(int(directive_id), node_id, directive_type, stored, now), int(position)

    async def pending(self, node_id: str) -> list[QueuedDirective]:
        """The node's queued directives, next first."""
        sql = (
            "SELECT directive_id, node_id, type, payload, created_at FROM directives "
            "WHERE node_id = $1 ORDER BY directive_id"
        )
        async with self._db.connection("list directives") as conn:
            rows = await conn.fetch(sql, node_id)
        return [QueuedDirective(int(a), str(b), int(c), d, int(e)) for a, b, c, d, e in rows]
