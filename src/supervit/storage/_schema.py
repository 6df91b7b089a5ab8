"""The node database (``actrix.db``): its schema migrations and how to open it.

Each :class:`~supervit.storage.Migration` leaves the file at its ``PRAGMA user_version``; a
release that changes the schema appends a migration, never edits a published one. A file whose
version is newer than :data:`NODE_MIGRATIONS` knows is refused (see :meth:`Database.open`).
"""

from __future__ import annotations

from pathlib import Path

from supervit.storage._db import Database, Migration

__all__ = ["NODE_DB_FILENAME", "NODE_MIGRATIONS", "open_node_database"]

NODE_DB_FILENAME = "actrix.db"
"""File name of the node database inside the node's data directory."""

# STRICT tables make SQLite reject values of the wrong type instead of silently storing them.
# realm_id is the INTEGER PRIMARY KEY (the rowid), so keyset paging walks the table b-tree
# directly. store_meta keeps counters (realm_count: by triggers in v2 and v3, by RealmStore once per
# group commit from v4) updated in the same transaction as the rows they count, because COUNT(*) is
# a full scan in SQLite.
_V1 = """
CREATE TABLE realms (
    realm_id    INTEGER PRIMARY KEY CHECK (realm_id BETWEEN 0 AND 4294967295),
    name        TEXT    NOT NULL,
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    status      TEXT    NOT NULL DEFAULT 'Normal'
                        CHECK (status IN ('Normal', 'Suspended', 'Terminated')),
    expires_at  INTEGER NOT NULL DEFAULT 0 CHECK (expires_at >= 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER,
    use_servers TEXT    NOT NULL DEFAULT '',
    version     INTEGER NOT NULL CHECK (version >= 0)
) STRICT;

CREATE INDEX realms_version ON realms (version);

CREATE TABLE store_meta (
    key   TEXT    PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO store_meta (key, value) VALUES ('realm_count', 0);

CREATE TABLE config (
    config_type INTEGER NOT NULL,
    key         TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (config_type, key)
) STRICT, WITHOUT ROWID;
"""

# The realm counter is kept by triggers: creating or deleting a realm is then one statement
# (atomic by itself, no savepoint), and no code path can forget the counter. A missing counter
# row aborts the change instead of letting the count drift.
_V2 = """
CREATE TRIGGER realms_count_insert AFTER INSERT ON realms
BEGIN
    SELECT RAISE(ABORT, 'node database is missing its realm_count metadata row')
    WHERE NOT EXISTS (SELECT 1 FROM store_meta WHERE key = 'realm_count');
    UPDATE store_meta SET value = value + 1 WHERE key = 'realm_count';
END;

CREATE TRIGGER realms_count_delete AFTER DELETE ON realms
BEGIN
    SELECT RAISE(ABORT, 'node database is missing its realm_count metadata row')
    WHERE NOT EXISTS (SELECT 1 FROM store_meta WHERE key = 'realm_count');
    UPDATE store_meta SET value = value - 1 WHERE key = 'realm_count';
END;
"""

# The nonces of write requests, each committed in the same transaction as the request's own write
# (a realm or config change), so such a request costs one commit instead of two (nonce.db, then
# this file) and a crash never keeps the change without its nonce. One row per nonce, appended;
# SqliteNonceStorage (its "companion" database) loads them at start-up, counts them and deletes
# them once expired, by expires_at.
_V3 = """
CREATE TABLE accepted_nonces (
    nonce      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX accepted_nonces_expires_at ON accepted_nonces (expires_at);
"""

# Written once per group commit instead of once per request (Database.add_to_group; docs/performance.md
# step 16): the realm counter by RealmStore (one UPDATE per group, replacing v2's triggers) and the
# nonces of a group's write requests as one row, the layout of nonce.db's own accepted_nonces.
# The counter is recounted once here, so it starts right whatever the file held. The index on
# `version` goes: RealmStore keeps the highest version in memory (read once by a scan).
_V4 = """
DROP TRIGGER realms_count_insert;
DROP TRIGGER realms_count_delete;
INSERT OR REPLACE INTO store_meta (key, value) SELECT 'realm_count', COUNT(*) FROM realms;

ALTER TABLE accepted_nonces RENAME TO accepted_nonces_v3;
DROP INDEX accepted_nonces_expires_at;
CREATE TABLE accepted_nonces (
    batch_id   INTEGER PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    nonces     TEXT    NOT NULL
) STRICT;
CREATE INDEX accepted_nonces_expires_at ON accepted_nonces (expires_at);
INSERT INTO accepted_nonces (expires_at, nonces)
    SELECT expires_at, json_group_array(nonce) FROM accepted_nonces_v3 GROUP BY expires_at ORDER BY expires_at;
DROP TABLE accepted_nonces_v3;

DROP INDEX realms_version;
"""

NODE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, _V1),
    Migration(2, _V2),
    Migration(3, _V3),
    Migration(4, _V4),
)
"""Every schema step of the node database, oldest first."""


async def open_node_database(data_dir: Path | str, *, synchronous: str = "FULL") -> Database:
    """Open ``data_dir/actrix.db`` (creating directory and file if missing) at the latest schema.

    Raises :class:`~supervit.StorageError` if the file cannot be opened or migrated, or if it was
    written by a newer supervit (its schema version is higher than this release knows).
    """
    return await Database.open(Path(data_dir) / NODE_DB_FILENAME, NODE_MIGRATIONS, synchronous=synchronous)
