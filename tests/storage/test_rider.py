"""Riders: a small write carried in the transaction of the caller's next write on its database."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from supervit._exceptions import StorageError
from supervit.storage import (
    NODE_DB_FILENAME,
    NODE_MIGRATIONS,
    Database,
    Migration,
    RealmStore,
    open_node_database,
    riding,
)

MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE riders (label TEXT NOT NULL);
        """,
    ),
)


class Receipt:
    """A rider that writes ``label`` into ``riders`` on ``db``; records what it was told."""

    def __init__(self, db: Database, label: str, *, broken: bool = False) -> None:
        self.db = db
        self.label = label
        self.broken = broken
        self.boarded = 0
        self.outcomes: list[bool] = []
        self.riding = False

    def board(self, db: Database) -> bool:
        if db is not self.db or self.riding or self.outcomes[-1:] == [True]:
            return False
        self.boarded += 1
        self.riding = True
        return True

    def write(self, conn: sqlite3.Connection) -> None:
        table = "no_such_table" if self.broken else "riders"
        conn.execute(f"INSERT INTO {table} (label) VALUES (?)", (self.label,))

    def landed(self, committed: bool) -> None:
        self.riding = False
        self.outcomes.append(committed)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "rider.db", MIGRATIONS)
    yield database
    await database.close()


def committed(path: Path, table: str, column: str) -> list[str]:
    """What another connection sees as committed."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute(f"SELECT {column} FROM {table} ORDER BY rowid")]
    finally:
        conn.close()


async def test_rider_commits_with_the_write_and_lands_before_the_writer_resumes(db: Database) -> None:
    """The rider is written in the write's transaction; it learns "committed" before the writer
    resumes, and a second write from the same context does not carry it again."""
    receipt = Receipt(db, "n1")
    with riding(receipt):
        await db.write(lambda c: c.execute("INSERT INTO items (value) VALUES ('a')"), single_statement=True)
        assert receipt.outcomes == [True]
        assert committed(db.path, "riders", "label") == ["n1"]
        assert committed(db.path, "items", "value") == ["a"]
        await db.write(lambda c: c.execute("INSERT INTO items (value) VALUES ('b')"))
    assert receipt.boarded == 1 and committed(db.path, "riders", "label") == ["n1"]


@pytest.mark.parametrize("single_statement", [False, True])
async def test_rider_is_kept_when_the_write_itself_fails(db: Database, single_statement: bool) -> None:
    """A write that fails rolls back alone (savepoint or statement); its rider still commits."""
    receipt = Receipt(db, "n2")

    def fails(conn: sqlite3.Connection) -> None:
        if not single_statement:
            conn.execute("INSERT INTO items (value) VALUES ('rolled back')")
        conn.execute("INSERT INTO items (id, value) VALUES (1, NULL)")  # NOT NULL: fails

    with riding(receipt), pytest.raises(StorageError):
        await db.write(fails, single_statement=single_statement)
    assert receipt.outcomes == [True]
    assert committed(db.path, "riders", "label") == ["n2"]
    assert committed(db.path, "items", "value") == []


async def test_a_rider_that_cannot_be_written_fails_its_write(db: Database) -> None:
    """The write does not run without its rider: the caller gets StorageError, nothing commits."""
    receipt = Receipt(db, "n3", broken=True)
    with riding(receipt), pytest.raises(StorageError, match="rider"):
        await db.write(lambda c: c.execute("INSERT INTO items (value) VALUES ('never')"), single_statement=True)
    assert receipt.outcomes == [False]
    assert committed(db.path, "items", "value") == []


async def test_rider_ignores_other_databases_and_other_contexts(db: Database, tmp_path: Path) -> None:
    """A write on another database, or outside the riding block, does not carry the rider;
    a task started inside the block does (asyncio copies the context)."""
    other = await Database.open(tmp_path / "other.db", MIGRATIONS)
    try:
        receipt = Receipt(db, "n4")
        with riding(receipt):
            await other.write(lambda c: c.execute("INSERT INTO items (value) VALUES ('x')"))
            task = asyncio.ensure_future(db.write(lambda c: c.execute("INSERT INTO items (value) VALUES ('y')")))
        await db.write(lambda c: c.execute("INSERT INTO items (value) VALUES ('z')"))
        await task
        assert receipt.boarded == 1 and receipt.outcomes == [True]
        assert committed(other.path, "riders", "label") == []
        assert committed(db.path, "riders", "label") == ["n4"]
    finally:
        await other.close()


async def test_riders_of_concurrent_writes_share_one_group(db: Database) -> None:
    """Ten writers, each with its own rider, in one group: every rider commits with its write."""
    receipts = [Receipt(db, f"r{i}") for i in range(10)]

    async def one(i: int) -> None:
        with riding(receipts[i]):
            await db.write(lambda c: c.execute("INSERT INTO items (value) VALUES (?)", (f"v{i}",)))

    await asyncio.gather(*(one(i) for i in range(10)))
    assert all(r.outcomes == [True] for r in receipts)
    assert sorted(committed(db.path, "riders", "label")) == sorted(f"r{i}" for i in range(10))


async def test_a_node_database_at_schema_2_is_upgraded_keeping_its_realms(tmp_path: Path) -> None:
    """Schema 3 adds `accepted_nonces` to actrix.db; realms written at schema 2 are kept."""
    old = await Database.open(tmp_path / NODE_DB_FILENAME, NODE_MIGRATIONS[:2])
    await old.write(lambda c: c.execute(_SCHEMA_2_REALM))  # as that release wrote it (its trigger counts)
    await old.close()

    db = await open_node_database(tmp_path)
    try:
        version = await db.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        assert version == NODE_MIGRATIONS[-1].version >= 3
        realm = await RealmStore(db).get(5)
        assert realm is not None and realm.name == "old"
        assert await RealmStore(db).count() == 1
        await db.write(lambda c: c.execute("INSERT INTO accepted_nonces (expires_at, nonces) VALUES (1, '[\"n\"]')"))
        assert committed(db.path, "accepted_nonces", "nonces") == ['["n"]']
    finally:
        await db.close()


_SCHEMA_2_REALM = "INSERT INTO realms (realm_id, name, enabled, created_at, version) VALUES (5, 'old', 1, 1, 4)"


async def test_schema_4_keeps_schema_3_nonces_and_counts_realms_once_per_group(tmp_path: Path) -> None:
    """Schema 4 moves actrix.db's nonces (one row each at schema 3) into one row per group
    commit, keeping every one with its expiry, and replaces the counting triggers: the counter is
    recounted at the upgrade and then changed once per group by RealmStore. The version index
    goes."""
    old = await Database.open(tmp_path / NODE_DB_FILENAME, NODE_MIGRATIONS[:3])
    await old.write(lambda c: c.execute(_SCHEMA_2_REALM))
    for nonce, expiry in (("a", 100), ("b", 100), ("c", 200)):
        await old.write(
            lambda c, n=nonce, e=expiry: c.execute(
                "INSERT INTO accepted_nonces (nonce, expires_at) VALUES (?, ?)", (n, e)
            )
        )
    await old.write(lambda c: c.execute("UPDATE store_meta SET value = 7 WHERE key = 'realm_count'"))  # drifted
    await old.close()

    db = await open_node_database(tmp_path)
    try:
        rows = await db.read(
            lambda c: c.execute("SELECT expires_at, nonces FROM accepted_nonces ORDER BY expires_at").fetchall()
        )
        assert rows == [(100, '["a","b"]'), (200, '["c"]')]
        triggers = await db.read(
            lambda c: c.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        )
        assert triggers == []
        indexes = await db.read(lambda c: c.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall())
        assert ("realms_version",) not in indexes  # the highest version is kept in memory instead
        store = RealmStore(db)
        assert await store.count() == 1  # recounted, not the drifted 7
        created = await asyncio.gather(*(store.create(i, f"r{i}", True, [], 1) for i in range(10, 20)))
        assert all(created)
        assert await store.delete(5) and not await store.delete(5)
        assert await store.count() == 10 == len((await store.list_page()).realms)
        assert await store.max_realm_version() == 1
    finally:
        await db.close()
