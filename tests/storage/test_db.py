"""The Database core: group commit, per-op rollback, reads, migrations, shutdown."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from supervit._exceptions import StorageError
from supervit.storage import BatchPolicy, Database, Migration

MIGRATIONS = (Migration(1, "CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT NOT NULL);"),)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "sub" / "test.db", MIGRATIONS)
    yield database
    await database.close()


def insert(value: str, row_id: int | None = None) -> Callable[[sqlite3.Connection], int]:
    def run(conn: sqlite3.Connection) -> int:
        cur = conn.execute("INSERT INTO items (id, value) VALUES (?, ?)", (row_id, value))
        assert cur.lastrowid is not None
        return cur.lastrowid

    return run


def outside_values(path: Path) -> list[str]:
    """What a separate connection (another process, in effect) sees as committed."""
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT value FROM items ORDER BY id")]
    finally:
        conn.close()


async def block_writer(db: Database) -> tuple[threading.Event, asyncio.Future[None]]:
    """Hold the committer until the returned event is set: writes issued meanwhile form one group.

    A first (empty) write runs and queues its COMMIT behind the blocked committer thread; every
    write issued before ``release`` is set therefore waits and joins the next group.
    """
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(10)

    held = asyncio.get_running_loop().run_in_executor(db._committer, hold)
    await asyncio.to_thread(entered.wait, 10)
    first = asyncio.ensure_future(db.write(lambda conn: None))
    await asyncio.sleep(0.01)  # let that first group start: its commit now waits behind ``hold``
    return release, asyncio.gather(held, first)  # type: ignore[return-value]


async def test_open_creates_directory_and_records_schema_version(db: Database) -> None:
    assert db.path.exists()
    assert await db.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == 1


async def test_read_sees_committed_write(db: Database) -> None:
    await db.write(insert("a"))
    assert await db.read(lambda c: c.execute("SELECT value FROM items").fetchall()) == [("a",)]


async def test_failing_op_rolls_back_alone_within_its_group(db: Database) -> None:
    seen_outside: list[list[str]] = []

    def fail_after_insert(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO items (value) VALUES ('doomed')")
        raise RuntimeError("boom")

    def third(conn: sqlite3.Connection) -> list[str]:
        seen_outside.append(outside_values(db.path))  # same group: "first" is not committed yet
        conn.execute("INSERT INTO items (value) VALUES ('third')")
        return [row[0] for row in conn.execute("SELECT value FROM items ORDER BY id")]

    release, blocker = await block_writer(db)
    first = asyncio.ensure_future(db.write(insert("first")))
    failing = asyncio.ensure_future(db.write(fail_after_insert))
    last = asyncio.ensure_future(db.write(third))
    await asyncio.sleep(0.05)
    release.set()
    await blocker
    assert await first == 1
    with pytest.raises(RuntimeError, match="boom"):
        await failing
    assert await last == ["first", "third"]  # the failed op's row is gone inside the transaction
    assert seen_outside == [[]]
    assert outside_values(db.path) == ["first", "third"]


async def test_sqlite_error_in_op_becomes_storage_error_and_rolls_back(db: Database) -> None:
    await db.write(insert("a", 1))

    def duplicate(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO items (value) VALUES ('partial')")
        conn.execute("INSERT INTO items (id, value) VALUES (1, 'dup')")

    with pytest.raises(StorageError, match="UNIQUE"):
        await db.write(duplicate)
    assert outside_values(db.path) == ["a"]


async def test_result_is_delivered_only_after_commit(db: Database) -> None:
    observed: list[bool] = []
    release, blocker = await block_writer(db)
    task = asyncio.ensure_future(db.write(insert("x")))

    def later(conn: sqlite3.Connection) -> None:
        observed.append(task.done())  # runs after "x" in the same group, before its commit

    second = asyncio.ensure_future(db.write(later))
    await asyncio.sleep(0.05)
    release.set()
    await blocker
    await task
    await second
    assert observed == [False]
    assert outside_values(db.path) == ["x"]  # by the time the caller has a result, it is durable


async def test_many_concurrent_writes_all_commit(db: Database) -> None:
    ids = await asyncio.gather(*(db.write(insert(f"v{i}")) for i in range(500)))
    assert sorted(ids) == list(range(1, 501))
    assert len(outside_values(db.path)) == 500


async def test_a_group_carries_at_most_max_items_writes(tmp_path: Path) -> None:
    sizes: list[int] = []
    async with await Database.open(tmp_path / "g.db", MIGRATIONS, batching=BatchPolicy(max_items=4)) as db:
        db.commit_observer = lambda _secs, operations: sizes.append(operations)
        await asyncio.gather(*(db.write(insert(f"v{i}")) for i in range(10)))
    assert sum(sizes) == 10 and max(sizes) == 4


async def test_a_full_group_does_not_wait_for_the_linger(tmp_path: Path) -> None:
    """After a group with company the next one lingers (30 s here) unless max_items writes wait."""
    policy = BatchPolicy(max_delay_secs=30, max_items=4)
    async with await Database.open(tmp_path / "l.db", MIGRATIONS, batching=policy) as db:
        for wave in range(3):
            await asyncio.wait_for(asyncio.gather(*(db.write(insert(f"w{wave}-{i}")) for i in range(4))), 20)
        assert len(outside_values(db.path)) == 12


async def test_close_commits_writes_waiting_for_the_linger_without_waiting_for_it(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "w.db", MIGRATIONS, batching=BatchPolicy(max_delay_secs=30, max_items=100))
    await asyncio.gather(*(db.write(insert(f"first-{i}")) for i in range(4)))  # company: the next group lingers
    waiting = [asyncio.ensure_future(db.write(insert(f"late-{i}"))) for i in range(2)]
    await asyncio.sleep(0)
    await asyncio.wait_for(db.close(), 10)
    assert len(await asyncio.gather(*waiting)) == 2
    assert len(outside_values(tmp_path / "w.db")) == 6


async def test_read_is_one_snapshot(db: Database) -> None:
    await db.write(insert("a"))
    first_done, write_done = threading.Event(), threading.Event()

    def two_counts(conn: sqlite3.Connection) -> tuple[int, int]:
        first = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        first_done.set()
        write_done.wait(10)
        second = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return first, second

    reading = asyncio.ensure_future(db.read(two_counts))
    await asyncio.to_thread(first_done.wait, 10)
    await db.write(insert("b"))
    write_done.set()
    assert await reading == (1, 1)
    assert await db.read(lambda c: c.execute("SELECT COUNT(*) FROM items").fetchone()[0]) == 2


async def test_read_connection_refuses_writes(db: Database) -> None:
    with pytest.raises(StorageError, match="readonly"):
        await db.read(lambda c: c.execute("INSERT INTO items (value) VALUES ('sneaky')"))
    assert outside_values(db.path) == []


async def test_close_is_idempotent_and_finishes_queued_writes(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "c.db", MIGRATIONS)
    pending = [asyncio.ensure_future(db.write(insert(f"v{i}"))) for i in range(20)]
    await asyncio.sleep(0)  # let every write reach the queue before close
    await db.close()
    await db.close()
    assert len(await asyncio.gather(*pending)) == 20
    assert len(outside_values(tmp_path / "c.db")) == 20
    with pytest.raises(StorageError, match="closed"):
        await db.write(insert("late"))
    with pytest.raises(StorageError, match="closed"):
        await db.read(lambda c: None)


async def test_async_context_manager_closes(tmp_path: Path) -> None:
    async with await Database.open(tmp_path / "cm.db", MIGRATIONS) as db:
        await db.write(insert("a"))
    with pytest.raises(StorageError, match="closed"):
        await db.write(insert("b"))


async def test_migrations_run_once_and_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    async with await Database.open(path, MIGRATIONS) as db:
        await db.write(insert("kept"))
    v2 = (*MIGRATIONS, Migration(2, "ALTER TABLE items ADD COLUMN extra INTEGER NOT NULL DEFAULT 7;"))
    async with await Database.open(path, v2) as db:
        rows = await db.read(lambda c: c.execute("SELECT value, extra FROM items").fetchall())
        assert rows == [("kept", 7)]
        assert await db.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == 2
    with pytest.raises(StorageError, match="newer"):
        await Database.open(path, MIGRATIONS)


async def test_failed_migration_leaves_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    broken = (*MIGRATIONS, Migration(2, "CREATE TABLE half (x INTEGER);\nTHIS IS NOT SQL;"))
    with pytest.raises(StorageError, match="migrate"):
        await Database.open(path, broken)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"items"}
    finally:
        conn.close()


async def test_cancelled_caller_does_not_break_the_writer(db: Database) -> None:
    release, blocker = await block_writer(db)
    cancelled = asyncio.ensure_future(db.write(insert("still-written")))
    await asyncio.sleep(0)
    cancelled.cancel()
    release.set()
    await blocker
    assert await db.write(insert("after")) == 2
    assert outside_values(db.path) == ["still-written", "after"]


async def test_write_lock_held_elsewhere_waits_without_blocking_the_loop(db: Database) -> None:
    """If another connection holds the write lock, writes wait for it while the loop keeps running."""
    other = sqlite3.connect(db.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    tick_task = asyncio.ensure_future(ticker())
    writing = asyncio.ensure_future(db.write(insert("waited")))
    await asyncio.sleep(0.2)
    assert not writing.done()
    assert ticks > 20  # the loop kept turning while the write waited for the lock
    other.execute("COMMIT")
    other.close()
    assert await writing == 1
    tick_task.cancel()
    assert outside_values(db.path) == ["waited"]


async def test_what_a_group_shares_is_written_once_in_its_transaction(db: Database) -> None:
    """Items handed to add_to_group by a group's writes reach their flush once, together, after
    the last write and in the same transaction; a failed write's later items are its own choice."""
    await db.write(lambda c: c.execute("CREATE TABLE shared (n INTEGER NOT NULL, items TEXT NOT NULL)"))
    calls: list[list[str]] = []

    def flush(conn: sqlite3.Connection, items: list[str]) -> None:
        calls.append(list(items))
        conn.execute("INSERT INTO shared (n, items) VALUES (?, ?)", (len(items), ",".join(items)))

    def write(value: str) -> Callable[[sqlite3.Connection], int]:
        def run(conn: sqlite3.Connection) -> int:
            row_id = insert(value)(conn)
            db.add_to_group(flush, value)
            return row_id

        return run

    release, first = await block_writer(db)
    writes = [asyncio.ensure_future(db.write(write(f"v{i}"))) for i in range(5)]
    await asyncio.sleep(0.01)
    release.set()
    await first
    await asyncio.gather(*writes)
    assert calls == [["v0", "v1", "v2", "v3", "v4"]]  # one group, one flush with every item
    conn = sqlite3.connect(db.path)
    try:
        assert conn.execute("SELECT n, items FROM shared").fetchall() == [(5, "v0,v1,v2,v3,v4")]
    finally:
        conn.close()
    await db.write(write("v5"))  # the next group starts with nothing left over
    assert calls[-1] == ["v5"]


async def test_a_failing_flush_fails_the_whole_group_and_the_next_group_runs(tmp_path: Path) -> None:
    """If what a group shares cannot be written, none of its writes is applied and each gets
    StorageError naming the cause; the writes queued behind it form the next group as usual."""
    db = await Database.open(tmp_path / "test.db", MIGRATIONS, batching=BatchPolicy(max_items=2))

    def refuse(conn: sqlite3.Connection, items: list[str]) -> None:
        raise sqlite3.OperationalError("shared row refused")

    def write(value: str, shared: bool) -> Callable[[sqlite3.Connection], int]:
        def run(conn: sqlite3.Connection) -> int:
            row_id = insert(value)(conn)
            if shared:
                db.add_to_group(refuse, value)
            return row_id

        return run

    try:
        release, first = await block_writer(db)
        doomed = [asyncio.ensure_future(db.write(write(v, shared=v == "b"))) for v in ("a", "b")]
        queued = asyncio.ensure_future(db.write(write("c", shared=False)))  # beyond max_items: next group
        await asyncio.sleep(0.01)
        release.set()
        await first
        results = await asyncio.gather(*doomed, return_exceptions=True)
        assert all(isinstance(r, StorageError) and "shared row refused" in str(r) for r in results)
        assert await asyncio.wait_for(queued, 5) > 0
        assert outside_values(db.path) == ["c"]
    finally:
        await db.close()
