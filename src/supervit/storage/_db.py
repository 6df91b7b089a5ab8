"""One SQLite database file driven from asyncio without blocking the event loop.

Writes go to a single writer thread (SQLite allows one writer at a time anyway) which
**group-commits**: it takes every write queued since its last commit, runs each one inside its
own SAVEPOINT (so one failing operation rolls back alone, never half-applied), commits them all in
one transaction, and only then answers the callers. Each caller therefore learns its result only
after its change is durable, while one fsync is shared by many requests.

Reads run on a separate reader thread with its own connection; WAL lets them proceed while the
writer commits, and they see everything that was committed before the read started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from supervit._exceptions import StorageError

__all__ = ["Database", "Migration"]

T = TypeVar("T")
log = logging.getLogger(__name__)

_STOP = object()
# How long the writer waits for company before committing. 2 ms cut the nonce path's CPU per
# request by a fifth under load (bench/bench_node_rpc.py) for at most 2 ms of added latency.
DEFAULT_LINGER_SECS = 0.002


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step; ``version`` is the ``PRAGMA user_version`` it leaves the file at."""

    version: int
    sql: str


@dataclass(slots=True)
class _WriteOp:
    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    savepoint: bool


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():  # the caller was cancelled; its write still happened (or not) atomically
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Database:
    """An SQLite file with a group-committing writer thread and a reader thread.

    Open with :meth:`open`; always :meth:`close` (or use ``async with``).
    """

    def __init__(
        self,
        path: Path,
        migrations: Sequence[Migration] = (),
        *,
        synchronous: str = "FULL",
        max_batch: int = 512,
        linger_secs: float = DEFAULT_LINGER_SECS,
    ) -> None:
        self.path = path
        self._migrations = sorted(migrations, key=lambda m: m.version)
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._linger = linger_secs
        self._queue: queue.SimpleQueue[_WriteOp | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-read:{path.name}")
        self._reader_local = threading.local()
        self._closed = False
        self._lookup_conn: sqlite3.Connection | None = None

    @classmethod
    async def open(
        cls,
        path: Path | str,
        migrations: Sequence[Migration] = (),
        *,
        synchronous: str = "FULL",
        max_batch: int = 512,
        linger_secs: float = DEFAULT_LINGER_SECS,
    ) -> Database:
        """Create the parent directory if needed, open the file, apply pending migrations."""
        db = cls(Path(path), migrations, synchronous=synchronous, max_batch=max_batch, linger_secs=linger_secs)
        await asyncio.to_thread(db._start)
        return db

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- connection set-up ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            return conn
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database {self.path}: {exc}") from exc

    def _start(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create data directory {self.path.parent}: {exc}") from exc
        conn = self._connect()
        try:
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name=f"sqlite-write:{self.path.name}", daemon=True
        )
        self._writer.start()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        try:
            (current,) = conn.execute("PRAGMA user_version").fetchone()
            latest = self._migrations[-1].version if self._migrations else 0
            if current > latest:
                raise StorageError(
                    f"database {self.path} has schema version {current}, newer than this supervit "
                    f"supports ({latest}); upgrade supervit"
                )
            for migration in self._migrations:
                if migration.version <= current:
                    continue
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # Re-read under the write lock: another process may have migrated meanwhile.
                    (current,) = conn.execute("PRAGMA user_version").fetchone()
                    if migration.version <= current:
                        conn.execute("COMMIT")
                        continue
                    for statement in _split_sql(migration.sql):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={int(migration.version)}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                log.info("migrated %s to schema version %d", self.path.name, migration.version)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot migrate database {self.path}: {exc}") from exc

    # -- writes -----------------------------------------------------------------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, single_statement: bool = False) -> T:
        """Run ``fn(conn)`` atomically on the writer thread; return once it is committed.

        An exception raised by ``fn`` rolls back only ``fn``'s changes and is re-raised here
        (``sqlite3.Error`` becomes :class:`StorageError`). A failed commit fails every write of
        that group with :class:`StorageError`: nothing of it was applied.

        ``single_statement=True`` promises that ``fn`` executes exactly one statement; SQLite makes
        each statement atomic on its own, so the per-operation SAVEPOINT (two extra statements
        on the hot path) is skipped.
        """
        if self._closed:
            raise StorageError(f"database {self.path.name} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_WriteOp(fn, loop, future, not single_statement))
        return await future

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        last_size = 0
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch: list[_WriteOp] = [first]  # type: ignore[list-item]
                stop_after = False
                # Under load (the previous group had company) linger briefly so one commit (one
                # fsync) serves more writers; a lone write on an idle database never waits.
                # Sleeping (rather than waiting on the queue) means writers arriving meanwhile do
                # not wake this thread one by one, each wake-up costing a GIL hand-off.
                if last_size > 1 and self._linger > 0:
                    time.sleep(self._linger)
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop_after = True
                        break
                    batch.append(item)  # type: ignore[arg-type]
                self._run_batch(conn, batch)
                last_size = len(batch)
                if stop_after:
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_WriteOp]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                if op.savepoint:
                    conn.execute("SAVEPOINT op")
                try:
                    value = op.fn(conn)
                except Exception as exc:
                    if op.savepoint:
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                    if isinstance(exc, sqlite3.Error):
                        exc = StorageError(f"{self.path.name}: {exc}")
                    outcomes.append((op.future, False, exc))
                else:
                    if op.savepoint:
                        conn.execute("RELEASE op")
                    outcomes.append((op.future, True, value))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback failed on %s", self.path.name)
            log.error("commit of %d writes to %s failed: %s", len(batch), self.path.name, exc)
            error = StorageError(f"{self.path.name}: commit failed: {exc}")
            outcomes = [(op.future, False, error) for op in batch]
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for op, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(op.loop, []).append(outcome)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed; nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, items)

    # -- reads ------------------------------------------------------------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the reader thread in one read-only transaction.

        ``fn`` sees everything committed before it started, as one consistent snapshot across all
        its statements; an attempt to write raises :class:`StorageError`.
        """
        if self._closed:
            raise StorageError(f"database {self.path.name} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._read, fn)

    def lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` synchronously on the calling thread: for single indexed lookups only.

        A primary-key or index lookup costs microseconds and WAL readers never wait for the
        writer, so running it in place is cheaper than two thread hops and does not stall the
        event loop (``bench/bench_realm_paging.py`` and ``bench/bench_node_rpc.py`` measure it).
        Scans and multi-statement reads belong in :meth:`read`. Call it from one thread only.
        """
        if self._closed:
            raise StorageError(f"database {self.path.name} is closed")
        conn = self._lookup_conn
        if conn is None:
            conn = self._lookup_conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
        try:
            return fn(conn)
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path.name}: {exc}") from exc

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._connect()
            # Writes must go through the group-committing writer; a stray one here is a bug.
            conn.execute("PRAGMA query_only=ON")
            self._reader_local.conn = conn
        try:
            # One read transaction per call: every statement of ``fn`` sees the same snapshot
            # (in autocommit mode each SELECT would see a different one).
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path.name}: {exc}") from exc

    # -- shutdown ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Finish queued writes, then close both connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        await asyncio.get_running_loop().run_in_executor(self._reader, self._close_reader)
        self._reader.shutdown(wait=True)
        if self._lookup_conn is not None:
            self._lookup_conn.close()
            self._lookup_conn = None

    def _close_reader(self) -> None:
        conn = getattr(self._reader_local, "conn", None)
        if conn is not None:
            conn.close()
            self._reader_local.conn = None


def _split_sql(script: str) -> list[str]:
    """Split a migration script into complete statements (``sqlite3.complete_statement`` aware)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
