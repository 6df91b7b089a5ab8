"""DurableLog: many durable items, one write operation per group commit, outcomes per item."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from supervit import StorageError
from supervit.storage import BatchPolicy, Database, DurableLog, Migration

_SCHEMA = (Migration(1, "CREATE TABLE batches (id INTEGER PRIMARY KEY, items TEXT NOT NULL);"),)


def _append(conn: sqlite3.Connection, items: list[str]) -> int | None:
    if "boom" in items:
        raise sqlite3.IntegrityError("item refused")
    return conn.execute("INSERT INTO batches (items) VALUES (?)", (",".join(items),)).lastrowid


async def _rows(db: Database) -> list[str]:
    return [r[0] for r in await db.read(lambda c: c.execute("SELECT items FROM batches ORDER BY id").fetchall())]


async def test_items_submitted_together_share_one_committed_row(tmp_path: Path) -> None:
    committed: list[tuple[list[str], int | None]] = []
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = DurableLog(db, _append, what="items", on_committed=lambda items, r: committed.append((items, r)))
        results = await asyncio.gather(*(batcher.append(f"i{n}") for n in range(20)))
        assert len(set(results)) == 1  # every item got its operation's result: one row id
        assert await _rows(db) == [",".join(f"i{n}" for n in range(20))]
        assert committed == [([f"i{n}" for n in range(20)], results[0])]
        assert not batcher.busy


async def test_a_failing_item_is_refused_alone_and_the_next_batch_works(tmp_path: Path) -> None:
    """Issue 10: one item the operation cannot write fails alone; its batch-mates are stored."""
    committed: list[list[str]] = []
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = DurableLog(db, _append, what="items", on_committed=lambda items, r: committed.append(items))
        items = ["a", "b", "boom", "d", "e"]
        outcomes = await asyncio.gather(*(batcher.append(i) for i in items), return_exceptions=True)
        failed = [item for item, o in zip(items, outcomes, strict=True) if isinstance(o, StorageError)]
        assert failed == ["boom"]
        assert sorted(i for part in committed for i in part) == ["a", "b", "d", "e"]
        assert await batcher.append("c") is not None
        stored = sorted(i for row in await _rows(db) for i in row.split(","))
        assert stored == ["a", "b", "c", "d", "e"]


async def test_a_failed_commit_fails_every_item_of_its_operation(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = DurableLog(db, _append, what="items")
        await db.close()  # every later operation fails in the database, not in _append
        outcomes = await asyncio.gather(batcher.append("a"), batcher.append("b"), return_exceptions=True)
        assert all(isinstance(o, StorageError) for o in outcomes)


async def test_sequential_items_each_get_their_own_operation(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = DurableLog(db, _append, what="items")
        for n in range(5):
            await batcher.append(f"s{n}")
        assert await _rows(db) == [f"s{n}" for n in range(5)]


async def test_drain_waits_for_items_still_waiting_for_their_batch(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = DurableLog(db, _append, what="items", policy=BatchPolicy(max_delay_secs=0.3))
        for wave in range(3):  # multi-item batches: under load, so the next operation is spaced
            await asyncio.gather(*(batcher.append(f"w{wave}-{n}") for n in range(4)))
        late = batcher.append("late")
        assert batcher.busy
        await batcher.drain()
        assert late.done() and not batcher.busy
        assert (await _rows(db))[-1] == "late"


async def test_a_sequential_caller_is_never_held_back_by_the_delay(tmp_path: Path) -> None:
    """Nothing else is unsettled when a sequential caller appends: no load, so no 30 s wait."""
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = DurableLog(db, _append, what="items", policy=BatchPolicy(max_delay_secs=30))
        for n in range(5):
            await asyncio.wait_for(batcher.append(f"s{n}"), 20)
        assert await _rows(db) == [f"s{n}" for n in range(5)]


async def test_max_items_waiting_start_the_operation_without_the_delay(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "b.db", _SCHEMA) as db:
        batcher = DurableLog(db, _append, what="items", policy=BatchPolicy(max_delay_secs=30, max_items=4))
        for wave in range(3):  # concurrent appends: the log is under load from the second wave on
            await asyncio.wait_for(asyncio.gather(*(batcher.append(f"w{wave}-{n}") for n in range(4))), 20)
        assert len(await _rows(db)) == 3


def test_a_policy_refuses_nonsense() -> None:
    for bad in ({"max_delay_secs": -1}, {"max_items": 0}, {"under_load": -0.5}):
        with pytest.raises(ValueError):
            BatchPolicy(**bad)  # type: ignore[arg-type]
