"""WriteBatcher: many durable items, one write operation per group commit, outcomes per item."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from supervit import StorageError
from supervit.storage import Database, Migration, WriteBatcher

_SCHEMA = (Migration(1, "CREATE TABLE batches (id INTEGER PRIMARY KEY, items TEXT NOT NULL);"),)


def _append(conn: sqlite3.Connection, items: list[str]) -> int | None:
    if "boom" in items:
        raise sqlite3.OperationalError("disk on fire")
    return conn.execute("INSERT INTO batches (items) VALUES (?)", (",".join(items),)).lastrowid


async def _rows(db: Database) -> list[str]:
    return [r[0] for r in await db.read(lambda c: c.execute("SELECT items FROM batches ORDER BY id").fetchall())]


async def test_items_submitted_together_share_one_committed_row(tmp_path: Path) -> None:
    committed: list[tuple[list[str], int | None]] = []
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = WriteBatcher(db, _append, what="items", on_committed=lambda items, r: committed.append((items, r)))
        results = await asyncio.gather(*(batcher.submit(f"i{n}") for n in range(20)))
        assert len(set(results)) == 1  # every item got its operation's result: one row id
        assert await _rows(db) == [",".join(f"i{n}" for n in range(20))]
        assert committed == [([f"i{n}" for n in range(20)], results[0])]
        assert not batcher.busy


async def test_a_failed_write_fails_its_items_and_the_next_batch_works(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = WriteBatcher(db, _append, what="items")
        outcomes = await asyncio.gather(batcher.submit("a"), batcher.submit("boom"), return_exceptions=True)
        assert all(isinstance(o, StorageError) for o in outcomes)
        assert await batcher.submit("c") is not None
        assert await _rows(db) == ["c"]


async def test_sequential_items_each_get_their_own_operation(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = WriteBatcher(db, _append, what="items")
        for n in range(5):
            await batcher.submit(f"s{n}")
        assert await _rows(db) == [f"s{n}" for n in range(5)]


async def test_drain_waits_for_items_still_waiting_for_their_batch(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = WriteBatcher(db, _append, what="items", min_spacing_secs=0.3)
        for wave in range(3):  # multi-item batches: under load, so the next operation is spaced
            await asyncio.gather(*(batcher.submit(f"w{wave}-{n}") for n in range(4)))
        late = batcher.submit("late")
        assert batcher.busy
        await batcher.drain()
        assert late.done() and not batcher.busy
        assert (await _rows(db))[-1] == "late"
