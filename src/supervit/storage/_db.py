"""One SQLite database file driven from asyncio without blocking the event loop.

Writes are **group-committed**. Every write queued since the last commit runs inside its own
SAVEPOINT (so one failing operation rolls back alone, never half-applied), all of them in one
transaction, and the callers are answered only once that transaction is committed: each learns
its result after its change is durable, while one fsync is shared by many requests.

The write statements themselves run on the event loop (single-row statements cost microseconds,
and this connection is the file's only writer, so they never wait for a lock); only the COMMIT,
which waits for the disk, runs on a committer thread. Writes arriving while a commit is in flight
form the next group. Compared with a writer thread running every statement, this saves a GIL
hand-off per operation (bench/bench_node_rpc.py measures it; docs/performance.md).

Work that a group's operations share is written once per group: an operation hands an item to
:meth:`Database.add_to_group` (a counter change, an accepted nonce) and the group writes all of
them with one statement after its last operation, in the same transaction (step 16).

Reads run on a separate reader thread with its own connection; WAL lets them proceed while the
writer commits, and they see everything that was committed before the read started.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from supervit._exceptions import StorageError
from supervit.storage._policy import GROUP_COMMIT_BATCHING, BatchPolicy
from supervit.storage._rider import Rider, current_rider

__all__ = ["Database", "Migration"]

T = TypeVar("T")
log = logging.getLogger(__name__)

# If another process holds the write lock, retry BEGIN this often instead of blocking the loop.
_BUSY_RETRY_SECS = 0.005
_BUSY_GIVE_UP_SECS = 30.0


class _Committer(Executor):
    """One thread that runs the COMMITs, fed through a plain queue.

    :meth:`call` hands the result back with one ``call_soon_threadsafe`` instead of the
    concurrent-future and asyncio-future chain of ``run_in_executor`` (a group commit is the
    hottest hand-off of a busy daemon: this halves its CPU). :meth:`submit` serves everything else.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()
        self._shut = False

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def call(self, loop: asyncio.AbstractEventLoop, fn: Callable[[], T], then: Callable[[T], None]) -> None:
        """Run ``fn()`` on the thread, then ``then(result)`` on ``loop`` (``fn`` must not raise)."""

        def job() -> None:
            result = fn()
            try:
                loop.call_soon_threadsafe(then, result)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                log.warning("a commit finished after its event loop closed")

        self._jobs.put(job)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()

        def job() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self._jobs.put(job)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if not self._shut:
            self._shut = True
            self._jobs.put(None)
        if wait:
            self._thread.join()


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step; ``version`` is the ``PRAGMA user_version`` it leaves the file at."""

    version: int
    sql: str


@dataclass(slots=True)
class _WriteOp:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    savepoint: bool
    on_settled: Callable[[], None] | None
    rider: Rider | None


_Outcome = tuple[_WriteOp, bool, Any]
GroupFlush = Callable[[sqlite3.Connection, list[Any]], None]


def _land(group: list[_WriteOp], committed: bool) -> None:
    # Riders learn their transaction's fate before any writer resumes.
    for op in group:
        rider = op.rider
        if rider is not None:
            op.rider = None
            rider.landed(committed)


def _resolve(items: list[_Outcome]) -> None:
    for op, ok, value in items:
        if op.on_settled is not None:
            op.on_settled()
        future = op.future
        if future.done():  # the caller was cancelled; its write still happened (or not) atomically
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class Database:
    """An SQLite file with group-committed writes, a committer thread and a reader thread.

    Open with :meth:`open`; always :meth:`close` (or use ``async with``). Writes must come from
    one event loop (the first one that writes).
    """

    def __init__(
        self,
        path: Path,
        migrations: Sequence[Migration] = (),
        *,
        synchronous: str = "FULL",
        batching: BatchPolicy = GROUP_COMMIT_BATCHING,
    ) -> None:
        self.path = path
        self._linger = batching.max_delay_secs
        self._migrations = sorted(migrations, key=lambda m: m.version)
        self._synchronous = synchronous
        self._max_batch = batching.max_items
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_WriteOp] = []
        self._busy = False  # a group is running or committing; the connection is not free
        self._lingering: asyncio.TimerHandle | None = None  # the next group waits for company
        self._drained: asyncio.Event | None = None
        self._committer = _Committer(f"sqlite-commit:{path.name}")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-read:{path.name}")
        self._reader_local = threading.local()
        self._closed = False
        self._lookup_conn: sqlite3.Connection | None = None
        self._group_size = 0
        self._group_items: dict[GroupFlush, list[Any]] = {}
        self.commit_observer: Callable[[float, int], None] | None = None
        """Called as ``(seconds, operations)`` after each successful group commit, on the committer
        thread (metrics: ``supervit_db_commit_seconds``); must be thread-safe and quick."""

    @classmethod
    async def open(
        cls,
        path: Path | str,
        migrations: Sequence[Migration] = (),
        *,
        synchronous: str = "FULL",
        batching: BatchPolicy = GROUP_COMMIT_BATCHING,
    ) -> Database:
        """Create the parent directory if needed, open the file, apply pending migrations."""
        db = cls(Path(path), migrations, synchronous=synchronous, batching=batching)
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
        # From now on this connection is used on the event loop: never let SQLite sleep on a lock
        # there (BEGIN is retried from the loop instead, see _start_group).
        conn.execute("PRAGMA busy_timeout=0")
        self._conn = conn

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

    async def write(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        single_statement: bool = False,
        on_settled: Callable[[], None] | None = None,
    ) -> T:
        """Run ``fn(conn)`` atomically in the next group; return once that group is committed.

        An exception raised by ``fn`` rolls back only ``fn``'s changes and is re-raised here
        (``sqlite3.Error`` becomes :class:`StorageError`). A failed commit fails every write of
        that group with :class:`StorageError`: nothing of it was applied. ``fn`` runs on the event
        loop: keep it to a few indexed statements (bulk work belongs in several writes).

        ``single_statement=True`` promises that ``fn`` executes exactly one statement; SQLite makes
        each statement atomic on its own, so the per-operation SAVEPOINT is skipped.

        ``on_settled`` is called on the loop once the write's fate is decided (committed or failed),
        even if the caller was cancelled meanwhile: the place for cache invalidation.

        A :class:`~supervit.storage.Rider` in the caller's context that boards this database is
        written in the same transaction, before ``fn`` and outside its savepoint (``fn`` failing
        does not undo it), and learns whether the transaction committed (``supervit/storage/_rider.py``);
        if the rider cannot be written, ``fn`` does not run and this raises :class:`StorageError`.
        """
        if self._closed:
            raise StorageError(f"database {self.path.name} is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise StorageError(f"database {self.path.name} is written from a second event loop")
        future: asyncio.Future[T] = loop.create_future()
        rider = current_rider()
        if rider is not None and not rider.board(self):
            rider = None
        pending = self._pending
        pending.append(_WriteOp(fn, future, not single_statement, on_settled, rider))
        if not self._busy:
            self._busy = True
            # Run the group after the callbacks already queued: requests that arrived in the same
            # loop iteration join it.
            loop.call_soon(self._start_group, loop.time())
        elif self._lingering is not None and len(pending) >= self._max_batch:
            self._end_linger()  # a full group waits for no one
        return await future

    def add_to_group(self, flush: GroupFlush, item: Any) -> None:
        """Hand ``item`` to ``flush``, which the running group calls once, as ``flush(conn, items)``
        with every item handed to it during the group, after the group's last operation and
        before its COMMIT (same transaction): one statement per group instead of one per
        operation, for what operations share (a counter change, accepted nonces).

        Call it only from a write's ``fn`` or a rider's ``write``, once the operation's own
        changes are final: an item is not taken back if the operation's savepoint rolls back
        afterwards. If ``flush`` raises, the whole group fails: none of its operations is
        applied and every writer of it gets :class:`StorageError`.
        """
        items = self._group_items.get(flush)
        if items is None:
            self._group_items[flush] = [item]
        else:
            items.append(item)

    def _end_linger(self) -> None:
        """Start the group that is waiting for company now (if one is)."""
        handle, self._lingering = self._lingering, None
        if handle is not None and self._loop is not None:
            handle.cancel()
            self._loop.call_soon(self._start_group, self._loop.time())

    def _start_group(self, first_try: float) -> None:
        loop = self._loop
        conn = self._conn
        assert loop is not None and conn is not None
        self._lingering = None
        if not self._pending:
            self._set_idle()
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) and loop.time() - first_try < _BUSY_GIVE_UP_SECS:
                # Another process holds the write lock: try again shortly, never block the loop.
                loop.call_later(_BUSY_RETRY_SECS, self._start_group, first_try)
                return
            self._fail_pending(StorageError(f"{self.path.name}: cannot start a transaction: {exc}"))
            return
        except sqlite3.Error as exc:
            self._fail_pending(StorageError(f"{self.path.name}: cannot start a transaction: {exc}"))
            return
        group = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        try:
            outcomes = [self._run_op(conn, op) for op in group]
        except BaseException:
            self._abandon(conn, group, "operation aborted")
            raise
        if self._group_items:
            shared, self._group_items = self._group_items, {}
            try:
                for flush, items in shared.items():
                    flush(conn, items)
            except Exception as exc:
                log.error("%s: cannot write what a group of %d writes shares: %s", self.path.name, len(group), exc)
                self._abandon(conn, group, f"cannot write what the group shares: {exc}")
                return
        self._group_size = len(group)  # one group commits at a time: read by _commit for the metrics
        self._committer.call(loop, lambda: self._commit(conn), lambda error: self._finish_group(group, outcomes, error))

    def _run_op(self, conn: sqlite3.Connection, op: _WriteOp) -> _Outcome:
        rider = op.rider
        if rider is not None:
            try:
                rider.write(conn)  # one statement, atomic by itself; kept whatever fn does
            except Exception as exc:
                # The write does not run without its rider: its effect must never commit alone.
                op.rider = None
                rider.landed(False)
                return (op, False, StorageError(f"{self.path.name}: cannot record the write's rider: {exc}"))
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
            return (op, False, exc)
        if op.savepoint:
            conn.execute("RELEASE op")
        return (op, True, value)

    def _commit(self, conn: sqlite3.Connection) -> BaseException | None:
        # Committer thread: the only place that waits for the disk. Never raises: the outcome is
        # handed back to the loop.
        try:
            started = time.perf_counter()
            conn.execute("COMMIT")
            observer = self.commit_observer
            if observer is not None:
                try:
                    observer(time.perf_counter() - started, self._group_size)
                except Exception:  # metrics only: the commit itself succeeded
                    log.exception("commit observer failed on %s", self.path.name)
            return None
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback failed on %s", self.path.name)
            return exc
        except BaseException as exc:  # e.g. the commit observer failed: the group's fate is unknown
            return exc

    def _finish_group(self, group: list[_WriteOp], outcomes: list[_Outcome], error: BaseException | None) -> None:
        if error is not None:
            log.error("commit of %d writes to %s failed: %s", len(group), self.path.name, error)
            failure = StorageError(f"{self.path.name}: commit failed: {error}")
            outcomes = [(op, False, failure) for op in group]
        _land(group, error is None)
        _resolve(outcomes)
        # Writes that arrived during the commit form the next group straight away.
        assert self._loop is not None
        # Under load (this group had company) wait a moment longer so the next fsync serves more
        # writers; a lone write on an idle database is never held back.
        if self._linger > 0 and len(group) > 1 and len(self._pending) < self._max_batch and not self._closed:
            self._lingering = self._loop.call_later(self._linger, self._start_group, self._loop.time())
        else:
            self._start_group(self._loop.time())

    def _abandon(self, conn: sqlite3.Connection, group: list[_WriteOp], why: str) -> None:
        self._group_items = {}
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            log.exception("rollback failed on %s", self.path.name)
        failure = StorageError(f"{self.path.name}: {why}")
        _land(group, False)
        _resolve([(op, False, failure) for op in group])
        if self._pending and self._loop is not None:
            self._loop.call_soon(self._start_group, self._loop.time())  # the writes queued meanwhile
        else:
            self._set_idle()

    def _fail_pending(self, error: StorageError) -> None:
        log.error("%s", error)
        group, self._pending = self._pending, []
        _land(group, False)
        _resolve([(op, False, error) for op in group])
        self._set_idle()

    def _set_idle(self) -> None:
        self._busy = False
        if self._drained is not None:
            self._drained.set()

    async def check_writable(self) -> None:
        """Raise :class:`StorageError` unless a write transaction can start and commit now.

        Joins the next group commit with an empty operation (the write lock is taken, nothing
        reaches the disk): for readiness probes.
        """
        await self.write(lambda conn: None, single_statement=True)

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
        """Finish queued writes, then close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._busy:
            self._drained = asyncio.Event()
            self._end_linger()  # no write can join any more: do not wait for company
            await self._drained.wait()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._committer, conn.close)
        self._committer.shutdown(wait=True)
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
