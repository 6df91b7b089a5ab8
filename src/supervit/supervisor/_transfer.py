"""Schema migrations on demand, and moving a SQLite supervisor's state into PostgreSQL.

``supervit supervisor migrate`` applies (or, with ``--check``, only reports) the schema steps of
the configured backend. ``supervit supervisor export`` writes the registry, the realm catalog and
the pending directives of an embedded (SQLite) supervisor to one JSON file; ``import`` loads such
a file into an empty PostgreSQL schema in one transaction. Nonces are not moved: they expire
within the credential window, so stop the old supervisor for that long (its nodes retry) or
accept that a credential it accepted in its last minutes could be replayed once to the new one.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

from supervit._exceptions import StorageError
from supervit.supervisor._config import SupervisorConfig
from supervit.supervisor._schema import SUPERVISOR_DB_FILENAME, SUPERVISOR_MIGRATIONS

__all__ = ["EXPORT_FORMAT", "check_sqlite_schema", "export_sqlite", "import_postgres", "migrate_postgres"]

EXPORT_FORMAT = "supervit-supervisor-export/1"
"""The ``format`` field of an export file."""

_NODE_COLUMNS = (
    "node_id",
    "name",
    "location_tag",
    "version",
    "agent_addr",
    "fingerprint",
    "registration",
    "first_registered_at",
    "registered_at",
    "registrations",
    "last_seen_at",
    "online",
    "offline_since",
    "report_interval_secs",
    "interval_override",
    "last_report_at",
    "last_report",
    "reports",
    "power_reserve_level",
    "realm_sync_version",
    "pushed_catalog_version",
    "last_push_at",
    "last_push_error",
    "stopped_at",  # absent from files written before graceful leave: imported as NULL
)
_BLOBS = ("registration", "last_report")
_BOOLS = ("online", "enabled", "deleted")
_CATALOG_COLUMNS: tuple[str, ...] = ("realm_id", "name", "enabled", "use_servers", "expires_at", "version")
_CATALOG_COLUMNS += ("deleted", "created_at", "updated_at")
_DIRECTIVE_COLUMNS = ("directive_id", "node_id", "type", "payload", "created_at")


def check_sqlite_schema(config: SupervisorConfig) -> tuple[int, list[int]]:
    """(version of ``supervisor.db``, versions not applied yet); version 0 when there is no file."""
    path = Path(config.server.data_dir) / SUPERVISOR_DB_FILENAME
    if not path.exists():
        return 0, [m.version for m in SUPERVISOR_MIGRATIONS]
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version), [m.version for m in SUPERVISOR_MIGRATIONS if m.version > version]


async def migrate_postgres(config: SupervisorConfig, *, check_only: bool) -> tuple[int, list[int]]:
    """Apply (or check) the PostgreSQL schema; see :func:`~supervit.supervisor._pg_schema.migrate`."""
    import asyncpg

    from supervit.supervisor._pg_errors import store_errors
    from supervit.supervisor._pg_schema import migrate

    with store_errors("migrate the PostgreSQL schema"):
        conn = await asyncpg.connect(config.server.database_url, timeout=config.server.database_timeout_secs)
        try:
            return await migrate(conn, config.server.database_schema, check_only=check_only)
        finally:
            await conn.close()


async def export_sqlite(config: SupervisorConfig, out: Path) -> dict[str, int]:
    """Write the embedded supervisor's registry, catalog and directives to ``out`` (JSON).

    The database is opened as the supervisor would (acknowledged reports are folded into the
    registry first), so it must not be running. Returns the counts written.
    """
    from supervit.supervisor._sqlite_store import SqliteStore

    store = await SqliteStore.open(config)
    try:
        await store.ingest.flush()

        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            def rows(sql: str, columns: tuple[str, ...]) -> list[dict[str, Any]]:
                found = []
                for row in conn.execute(sql):
                    item = dict(zip(columns, row, strict=True))
                    for name in _BLOBS:
                        if item.get(name) is not None:
                            item[name] = base64.b64encode(item[name]).decode()
                    for name in _BOOLS:
                        if name in item:
                            item[name] = bool(item[name])
                    found.append(item)
                return found

            (version,) = conn.execute("SELECT value FROM meta WHERE key = 'catalog_version'").fetchone()
            return {
                "format": EXPORT_FORMAT,
                "catalog_version": int(version),
                "nodes": rows(f"SELECT {', '.join(_NODE_COLUMNS)} FROM nodes ORDER BY node_id", _NODE_COLUMNS),
                "catalog": rows(
                    f"SELECT {', '.join(_CATALOG_COLUMNS)} FROM catalog ORDER BY version", _CATALOG_COLUMNS
                ),
                "directives": rows(
                    f"SELECT {', '.join(_DIRECTIVE_COLUMNS)} FROM directives ORDER BY directive_id", _DIRECTIVE_COLUMNS
                ),
            }

        data = await store.database.read(read)
    finally:
        await store.close()
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    tmp.replace(out)
    return {name: len(data[name]) for name in ("nodes", "catalog", "directives")}


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read export file {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise StorageError(f"{path} is not a supervit supervisor export ({EXPORT_FORMAT})")
    return data


def _record(item: dict[str, Any], columns: tuple[str, ...]) -> tuple[Any, ...]:
    values = []
    for name in columns:
        value = item.get(name)
        if name in _BLOBS and value is not None:
            value = base64.b64decode(value)
        values.append(value)
    return tuple(values)


async def import_postgres(config: SupervisorConfig, path: Path) -> dict[str, int]:
    """Load an export file into the configured PostgreSQL schema (migrated first), which must hold
    no nodes, realms or directives yet. One transaction: all or nothing. Returns the counts."""
    import asyncpg

    from supervit.supervisor._pg_errors import store_errors
    from supervit.supervisor._pg_schema import migrate

    data = _load(path)
    schema = config.server.database_schema
    with store_errors("import into PostgreSQL"):
        conn = await asyncpg.connect(config.server.database_url, timeout=config.server.database_timeout_secs)
        try:
            await migrate(conn, schema)
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                busy = await conn.fetchval(
                    "SELECT (SELECT COUNT(*) FROM nodes) + (SELECT COUNT(*) FROM catalog)"
                    " + (SELECT COUNT(*) FROM directives)"
                )
                if busy:
                    raise StorageError(f"schema {schema!r} already holds a fleet: import only into an empty one")
                nodes = [_record(item, _NODE_COLUMNS) for item in data["nodes"]]
                await conn.copy_records_to_table(
                    "nodes", records=nodes, columns=list(_NODE_COLUMNS), schema_name=schema
                )
                realms = [_record(item, _CATALOG_COLUMNS) for item in data["catalog"]]
                await conn.copy_records_to_table(
                    "catalog", records=realms, columns=list(_CATALOG_COLUMNS), schema_name=schema
                )
                directives = [_record(item, _DIRECTIVE_COLUMNS) for item in data["directives"]]
                await conn.copy_records_to_table(
                    "directives", records=directives, columns=list(_DIRECTIVE_COLUMNS), schema_name=schema
                )
                # New directives continue after the imported ones (same delivery order).
                await conn.execute(
                    "SELECT setval(pg_get_serial_sequence('directives', 'directive_id'),"
                    " GREATEST((SELECT MAX(directive_id) FROM directives), 1))"
                )
                await conn.execute(
                    "UPDATE meta SET value = $1 WHERE key = 'catalog_version'", int(data["catalog_version"])
                )
        finally:
            await conn.close()
    return {"nodes": len(nodes), "catalog": len(realms), "directives": len(directives)}
