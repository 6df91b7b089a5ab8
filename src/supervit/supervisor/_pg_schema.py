"""The supervisor's PostgreSQL schema, versioned like the SQLite one, and how it is migrated.

Every replica runs :func:`migrate` at start-up: under a transaction-scoped advisory lock (one
replica at a time; the others wait, then find nothing to do) it applies the steps newer than the
``schema_version`` table says, each in the same transaction as its version row. A database written
by a newer supervit is refused. ``supervit supervisor migrate --check`` reports without applying.
"""

from __future__ import annotations

import zlib
from typing import Any

from supervit._exceptions import StorageError
from supervit.storage import Migration

__all__ = ["PG_MIGRATIONS", "PendingMigrations", "lock_key", "migrate"]

# Mirrors the SQLite schema (_schema.py). BIGINT Unix seconds; realm_sync_version is NUMERIC(20)
# so every uint64 a node may report is stored losslessly.
_V1 = """
CREATE TABLE nodes (
    node_id                TEXT    PRIMARY KEY,
    name                   TEXT    NOT NULL,
    location_tag           TEXT    NOT NULL,
    version                TEXT    NOT NULL,
    agent_addr             TEXT    NOT NULL,
    fingerprint            TEXT    NOT NULL,
    registration           BYTEA   NOT NULL,
    first_registered_at    BIGINT  NOT NULL,
    registered_at          BIGINT  NOT NULL,
    registrations          BIGINT  NOT NULL DEFAULT 1,
    last_seen_at           BIGINT  NOT NULL,
    online                 BOOLEAN NOT NULL DEFAULT TRUE,
    offline_since          BIGINT,
    report_interval_secs   INTEGER NOT NULL CHECK (report_interval_secs > 0),
    interval_override      INTEGER CHECK (interval_override > 0),
    last_report_at         BIGINT,
    last_report            BYTEA,
    reports                BIGINT  NOT NULL DEFAULT 0,
    power_reserve_level    INTEGER CHECK (power_reserve_level BETWEEN 0 AND 5),
    realm_sync_version     NUMERIC(20) NOT NULL DEFAULT 0,
    pushed_catalog_version BIGINT  NOT NULL DEFAULT 0,
    last_push_at           BIGINT,
    last_push_error        TEXT
);

-- The offline sweep scans only online nodes.
CREATE INDEX nodes_online_seen ON nodes (last_seen_at) WHERE online;

CREATE TABLE directives (
    directive_id BIGSERIAL PRIMARY KEY,
    node_id      TEXT    NOT NULL,
    type         INTEGER NOT NULL CHECK (type > 0),
    payload      TEXT,
    created_at   BIGINT  NOT NULL
);

CREATE INDEX directives_node ON directives (node_id, directive_id);

CREATE TABLE catalog (
    realm_id    BIGINT  PRIMARY KEY CHECK (realm_id BETWEEN 0 AND 4294967295),
    name        TEXT    NOT NULL,
    enabled     BOOLEAN NOT NULL,
    use_servers TEXT    NOT NULL DEFAULT '',
    expires_at  BIGINT  NOT NULL DEFAULT 0 CHECK (expires_at >= 0),
    version     BIGINT  NOT NULL UNIQUE CHECK (version > 0),
    deleted     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT
);

CREATE TABLE meta (
    key   TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO meta (key, value) VALUES ('catalog_version', 0);

-- Consumed nonces when no Redis is configured: the primary key makes a nonce single-use
-- across every replica (the second insert of a nonce conflicts, even at the same instant).
CREATE TABLE nonces (
    nonce      TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE INDEX nonces_expires_at ON nonces (expires_at);
"""

# A node that left on purpose (its final report carried the supervit-leaving marker) is
# "stopped" rather than "offline"; its next registration or report clears the mark.
_V2 = """
ALTER TABLE nodes ADD COLUMN stopped_at BIGINT;
"""

# Every report rewrites its node's row. The index on last_seen_at served no query (the sweep's
# condition is an expression over the interval) but made every such update write index entries;
# without it, and with room left in each page, the updates can be HOT (no index writes: about a
# quarter less WAL per report, bench/bench_replicas.py), and autovacuum is told to keep up with a
# table that is rewritten once per report interval.
_V3 = """
DROP INDEX IF EXISTS nodes_online_seen;
ALTER TABLE nodes SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05);
"""

PG_MIGRATIONS: tuple[Migration, ...] = (Migration(1, _V1), Migration(2, _V2), Migration(3, _V3))
"""Every schema step of the PostgreSQL backend, oldest first (a published one is never edited)."""


def lock_key(schema: str, purpose: str) -> int:
    """A 63-bit advisory lock key for ``purpose`` in ``schema`` (replicas of one fleet agree on it;
    fleets in other schemas of the same database do not collide)."""
    return zlib.crc32(f"supervit:{schema}:{purpose}".encode()) | (0x5E << 32)


class PendingMigrations(StorageError):
    """``--check``: the database is behind; ``pending`` lists the versions not applied."""

    def __init__(self, current: int, pending: list[int]) -> None:
        self.current = current
        self.pending = pending
        super().__init__(f"schema at version {current}; not applied: {', '.join(map(str, pending))}")


async def migrate(conn: Any, schema: str, *, check_only: bool = False) -> tuple[int, list[int]]:
    """Bring ``schema`` to the latest version on ``conn`` (an asyncpg connection).

    Returns (version before, versions applied). With ``check_only`` nothing is changed and
    :class:`PendingMigrations` is raised if anything would be. :class:`StorageError` if the
    database is newer than this supervit.
    """
    latest = PG_MIGRATIONS[-1].version
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema, "migrate"))
        if not check_only:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_version ('
                "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
        current = 0
        if await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".schema_version') is not None:
            current = int(await conn.fetchval(f'SELECT COALESCE(MAX(version), 0) FROM "{schema}".schema_version'))
        if current > latest:
            raise StorageError(
                f"the database schema is at version {current}, newer than this supervit knows ({latest}): upgrade it"
            )
        pending = [m for m in PG_MIGRATIONS if m.version > current]
        if check_only:
            if pending:
                raise PendingMigrations(current, [m.version for m in pending])
            return current, []
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        for step in pending:
            await conn.execute(step.sql)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", step.version)
    return current, [m.version for m in pending]
