"""The supervisor database (``supervisor.db``): node registry, directive queue, realm catalog, nonces.

Everything the supervisor persists lives in one SQLite file, so a report's nonce, registry update
and directive hand-over commit in one transaction. Every nonce the supervisor accepts (RegisterNode,
Report, HealthCheck, admin) is remembered in one table, ``report_log`` (since v6; see
:mod:`supervit.supervisor._ingest`). A release that changes the schema appends a
:class:`~supervit.storage.Migration`; a published one is never edited.
"""

from __future__ import annotations

from pathlib import Path

from supervit.storage import Database, Migration

__all__ = ["SUPERVISOR_DB_FILENAME", "SUPERVISOR_MIGRATIONS", "open_supervisor_database"]

SUPERVISOR_DB_FILENAME = "supervisor.db"
"""File name of the supervisor database inside its data directory."""

# STRICT tables reject values of the wrong type. Protobuf blobs hold the node's own messages
# (without their credential) so every registration field and reported figure survives verbatim;
# the columns next to them are the ones queried or shown in listings.
_V1 = """
CREATE TABLE nodes (
    node_id                TEXT    PRIMARY KEY NOT NULL,
    name                   TEXT    NOT NULL,
    location_tag           TEXT    NOT NULL,
    version                TEXT    NOT NULL,
    agent_addr             TEXT    NOT NULL,
    fingerprint            TEXT    NOT NULL,
    registration           BLOB    NOT NULL,
    first_registered_at    INTEGER NOT NULL,
    registered_at          INTEGER NOT NULL,
    registrations          INTEGER NOT NULL DEFAULT 1,
    last_seen_at           INTEGER NOT NULL,
    online                 INTEGER NOT NULL DEFAULT 1 CHECK (online IN (0, 1)),
    offline_since          INTEGER,
    report_interval_secs   INTEGER NOT NULL CHECK (report_interval_secs > 0),
    interval_override      INTEGER CHECK (interval_override > 0),
    last_report_at         INTEGER,
    last_report            BLOB,
    reports                INTEGER NOT NULL DEFAULT 0,
    power_reserve_level    INTEGER CHECK (power_reserve_level BETWEEN 0 AND 5),
    realm_sync_version     INTEGER NOT NULL DEFAULT 0,
    pushed_catalog_version INTEGER NOT NULL DEFAULT 0,
    last_push_at           INTEGER,
    last_push_error        TEXT
) STRICT;

-- The offline sweep scans only online nodes.
CREATE INDEX nodes_online_seen ON nodes (online, last_seen_at);

CREATE TABLE directives (
    directive_id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id      TEXT    NOT NULL,
    type         INTEGER NOT NULL CHECK (type > 0),
    payload      TEXT,
    created_at   INTEGER NOT NULL
) STRICT;

CREATE INDEX directives_node ON directives (node_id, directive_id);

CREATE TABLE catalog (
    realm_id    INTEGER PRIMARY KEY CHECK (realm_id BETWEEN 0 AND 4294967295),
    name        TEXT    NOT NULL,
    enabled     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    use_servers TEXT    NOT NULL DEFAULT '',
    expires_at  INTEGER NOT NULL DEFAULT 0 CHECK (expires_at >= 0),
    version     INTEGER NOT NULL CHECK (version > 0),
    deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER
) STRICT;

CREATE UNIQUE INDEX catalog_version ON catalog (version);

CREATE TABLE meta (
    key   TEXT    PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO meta (key, value) VALUES ('catalog_version', 0);

CREATE TABLE nonces (
    nonce      TEXT    PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX nonces_expires_at ON nonces (expires_at);
"""

# Nonces of reports and health checks, one row (a JSON array) per batched write: uniqueness is
# enforced in memory, this table lets it survive restarts (v3 adds the reports themselves).
_V2 = """
CREATE TABLE nonce_batches (
    batch_id   INTEGER PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    nonces     TEXT    NOT NULL
) STRICT;

CREATE INDEX nonce_batches_expires_at ON nonce_batches (expires_at);
"""

# The nonce batches become the report log: each row also holds the reports it acknowledged (JSON),
# folded into the node rows later; the watermark says which rows are folded (see _ingest.py).
_V3 = """
ALTER TABLE nonce_batches ADD COLUMN reports TEXT;

INSERT INTO meta (key, value) VALUES ('reports_folded_through', 0);
"""

# A node that left on purpose (its final report carried the supervit leaving marker) is
# "stopped" rather than "offline"; its next registration or report clears the mark.
_V4 = """
ALTER TABLE nodes ADD COLUMN stopped_at INTEGER;
"""

# The "nonce batches" have been the report log since v3: the table is named for what it holds
# (each row: the reports and nonces one group commit acknowledged). Rows, ids and the
# reports_folded_through watermark are kept as they are.
_V5 = """
ALTER TABLE nonce_batches RENAME TO report_log;

DROP INDEX nonce_batches_expires_at;

CREATE INDEX report_log_expires_at ON report_log (expires_at);
"""

# One nonce table (issue 13): the per-row `nonces` table (v1) held the nonces of RegisterNode, admin
# calls and the reports that commit in their own transaction, beside those of the report log. Every
# accepted nonce now goes into a report-log row (a JSON array; `reports` NULL when it acknowledged
# none), so its remembered nonces move there, one row per expiry second, and the table goes. Expired
# ones move too: the clean-up drops them (the migration has no clock).
_V6 = """
INSERT INTO report_log (expires_at, nonces, reports)
SELECT expires_at, json_group_array(nonce), NULL FROM nonces GROUP BY expires_at ORDER BY expires_at;

DROP TABLE nonces;
"""

# The report log's reports become a BLOB of the requests as received (supervit/supervisor/_report_log.py):
# nothing is re-encoded per report any more (docs/performance.md, step 17). A STRICT column cannot
# change type, so the table is rebuilt with `reports ANY`, keeping every row and its batch_id (the
# fold watermark refers to them); rows written before hold JSON text, which is still read.
_V7 = """
CREATE TABLE report_log_v7 (
    batch_id   INTEGER PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    nonces     TEXT    NOT NULL,
    reports    ANY
) STRICT;

INSERT INTO report_log_v7 (batch_id, expires_at, nonces, reports)
SELECT batch_id, expires_at, nonces, reports FROM report_log;

DROP TABLE report_log;

ALTER TABLE report_log_v7 RENAME TO report_log;

CREATE INDEX report_log_expires_at ON report_log (expires_at);
"""

SUPERVISOR_MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, _V1),
    Migration(2, _V2),
    Migration(3, _V3),
    Migration(4, _V4),
    Migration(5, _V5),
    Migration(6, _V6),
    Migration(7, _V7),
)
"""Every schema step of the supervisor database, oldest first."""


async def open_supervisor_database(data_dir: Path | str, *, synchronous: str = "FULL") -> Database:
    """Open ``data_dir/supervisor.db`` (created if missing) at the latest schema.

    Raises :class:`~supervit.StorageError` if it cannot be opened or was written by a newer supervit.
    """
    return await Database.open(Path(data_dir) / SUPERVISOR_DB_FILENAME, SUPERVISOR_MIGRATIONS, synchronous=synchronous)
