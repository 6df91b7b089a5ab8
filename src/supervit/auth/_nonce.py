"""Nonce stores: remember each consumed nonce until it expires; check-and-remember is atomic."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from supervit._exceptions import NonceStorageError, StorageError
from supervit.storage import NODE_NONCE_BATCHING, Database, DurableLog, Migration

__all__ = [
    "CONSUME_NONCE_SQL",
    "NONCE_CLEANUP_SQL",
    "NONCE_LOG_CLEANUP_SQL",
    "MemoryNonceStorage",
    "NonceStorage",
    "NonceTicket",
    "NonceWindow",
    "SqliteNonceStorage",
]

log = logging.getLogger(__name__)


class NonceStorage(ABC):
    """Where consumed nonces are remembered."""

    @abstractmethod
    async def consume(self, nonce: str, expires_at: float) -> bool:
        """Atomically remember ``nonce`` until ``expires_at`` (Unix seconds).

        True if it was fresh (now consumed), False if it is already remembered. Raises
        :class:`NonceStorageError` if the store cannot tell: never a silent accept.
        """

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. Idempotent."""

    async def __aenter__(self) -> NonceStorage:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class NonceWindow:
    """Consumed nonces in memory until they expire; check-and-remember is one synchronous step.

    The shared core of :class:`MemoryNonceStorage` and the supervisor's in-memory replay check.
    """

    __slots__ = ("_expiry", "_heap")

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def consume(self, nonce: str, expires_at: float, now: float) -> bool:
        """Remember ``nonce`` until ``expires_at``; False if it is already remembered at ``now``."""
        heap = self._heap
        while heap and heap[0][0] < now:  # forget what can no longer pass the window check
            expiry, old = heapq.heappop(heap)
            if self._expiry.get(old) == expiry:
                del self._expiry[old]
        if nonce in self._expiry:
            return False
        self._expiry[nonce] = expires_at
        heapq.heappush(heap, (expires_at, nonce))
        return True

    def __len__(self) -> int:
        return len(self._expiry)


class MemoryNonceStorage(NonceStorage):
    """Process-local store (lost on restart): for tests and single-process tools."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._window = NonceWindow()

    async def consume(self, nonce: str, expires_at: float) -> bool:
        # No await: atomic on the event loop.
        return self._window.consume(nonce, expires_at, self._clock())

    def __len__(self) -> int:
        return len(self._window)


_NONCE_MIGRATIONS = (
    Migration(
        1,
        """
        CREATE TABLE nonces (
            nonce TEXT PRIMARY KEY NOT NULL,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX nonces_expires_at ON nonces (expires_at);
        """,
    ),
    Migration(
        2,
        """
        CREATE TABLE nonce_log (
            batch_id INTEGER PRIMARY KEY,
            expires_at INTEGER NOT NULL,
            nonces TEXT NOT NULL
        );
        CREATE INDEX nonce_log_expires_at ON nonce_log (expires_at);
        """,
    ),
    # Named for what it holds: the nonces this process accepted, one row per group commit.
    Migration(
        3,
        """
        ALTER TABLE nonce_log RENAME TO accepted_nonces;
        DROP INDEX nonce_log_expires_at;
        CREATE INDEX accepted_nonces_expires_at ON accepted_nonces (expires_at);
        """,
    ),
)

# An expired row may be taken over: its credential could no longer pass the window check anyway.
CONSUME_NONCE_SQL = """
INSERT INTO nonces (nonce, expires_at) VALUES (?, ?)
ON CONFLICT (nonce) DO UPDATE SET expires_at = excluded.expires_at WHERE nonces.expires_at < ?
"""
NONCE_CLEANUP_SQL = """
DELETE FROM nonces WHERE nonce IN (SELECT nonce FROM nonces WHERE expires_at < ? LIMIT ?)
"""
NONCE_LOG_CLEANUP_SQL = """
DELETE FROM accepted_nonces WHERE batch_id IN (SELECT batch_id FROM accepted_nonces WHERE expires_at < ? LIMIT ?)
RETURNING json_array_length(nonces)
"""

# The log's layout, in nonce.db and in a companion database (the node database's schema 4): one
# row per group commit holding its nonces as a JSON array.
_LOG_LOAD_SQL = "SELECT nonces, expires_at FROM accepted_nonces WHERE expires_at >= ?"
_LOG_COUNT_SQL = "SELECT COALESCE(SUM(json_array_length(nonces)), 0) FROM accepted_nonces"
# What SqliteNonceStorage.count adds up in nonce.db: the per-row table and the logged batches.
_COUNT_SQL = f"SELECT (SELECT COUNT(*) FROM nonces) + ({_LOG_COUNT_SQL})"

_PENDING, _RIDING, _LOGGING, _RECORDED = range(4)


class NonceTicket:
    """A nonce reserved by :meth:`SqliteNonceStorage.reserve`: remembered, not yet durable.

    It becomes durable either in the transaction of the request's own write on the store's
    companion database (the ticket is a :class:`~supervit.storage.Rider`: run the handler inside
    :func:`~supervit.storage.riding`) or, if no such write committed it, by :meth:`settle`, which
    appends it to the nonce log. Await :meth:`settle` before the request is answered, whatever
    the handler did: it returns at once when the handler's write already committed the nonce.
    """

    __slots__ = ("_done", "_state", "_store", "_wanted", "expires_at", "nonce")

    def __init__(self, store: SqliteNonceStorage, nonce: str, expires_at: int) -> None:
        self._store = store
        self.nonce = nonce
        self.expires_at = expires_at
        self._state = _PENDING
        self._wanted = False  # settle() was called: a failed ride falls back to the log at once
        self._done: asyncio.Future[None] | None = None

    @property
    def recorded(self) -> bool:
        """Whether the nonce is committed (by a companion write or the nonce log)."""
        return self._state == _RECORDED

    def board(self, db: Database) -> bool:
        """Ride on a write to the companion database unless already riding, recorded or logged."""
        if self._state == _PENDING and db is self._store.companion:
            self._state = _RIDING
            return True
        return False

    def write(self, conn: sqlite3.Connection) -> None:
        """Record the nonce inside the carrying transaction: one row per group commit holds the
        nonces of all its writes (:meth:`~supervit.storage.Database.add_to_group`)."""
        companion = self._store.companion
        assert companion is not None  # board() accepts the companion only
        companion.add_to_group(_append_nonces, (self.nonce, self.expires_at))

    def landed(self, committed: bool) -> None:
        """The carrying transaction's fate: committed, or not (the log takes over if settling)."""
        if committed:
            self._finish(None)
        else:
            self._state = _PENDING
            if self._wanted:
                self._append()

    async def settle(self) -> None:
        """Return once the nonce is durable: at once if a companion write committed it; else after
        waiting for a write in flight that carries it and, if that did not commit it (or nothing
        wrote it), appending it to the nonce log. Raises :class:`NonceStorageError` if it cannot be
        stored (the nonce stays remembered in memory: never accepted again by this process)."""
        self._wanted = True
        if self._state == _PENDING:
            self._append()
        if self._state == _RECORDED:
            return
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        # Shielded: a cancelled caller must not cancel the outcome other settlers may wait for.
        await asyncio.shield(self._done)

    def _append(self) -> None:
        self._state = _LOGGING
        # The log writes it whether or not anybody still waits (a cancelled request included).
        self._store._log_nonce(self.nonce, self.expires_at).add_done_callback(self._logged)

    def _logged(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            self._finish(NonceStorageError("nonce store failed: the nonce log was cancelled"))
            return
        error = future.exception()
        self._finish(None if error is None else NonceStorageError(f"nonce store failed: {error}"))

    def _finish(self, error: NonceStorageError | None) -> None:
        if error is None:
            self._state = _RECORDED
        done = self._done
        if done is None or done.done():
            return  # no settle() waits (it checks the state itself)
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
            done.exception()  # a settler cancelled meanwhile leaves it unread: not worth a warning


def _logged(conn: sqlite3.Connection, now: int) -> list[tuple[str, int]]:
    """The unexpired nonces of a log table, each with its row's expiry."""
    rows: list[tuple[str, int]] = []
    for text, expiry in conn.execute(_LOG_LOAD_SQL, (now,)):
        rows.extend((nonce, expiry) for nonce in json.loads(text))
    return rows


def _append_nonces(conn: sqlite3.Connection, accepted: list[tuple[str, int]]) -> None:
    # Uniqueness was decided in memory; the file only has to remember the nonces across restarts,
    # so a batch is one appended row (expiring with its latest nonce) instead of one B-tree
    # insert per nonce.
    conn.execute(
        "INSERT INTO accepted_nonces (expires_at, nonces) VALUES (?, ?)",
        (max(expiry for _, expiry in accepted), json.dumps([nonce for nonce, _ in accepted])),
    )


class SqliteNonceStorage(NonceStorage):
    """Durable store: ``nonce.db`` in ``data_dir`` (WAL, group commit).

    A ``consume`` returns only after its nonce is committed, so a nonce accepted before a crash
    or restart is still refused after it. Expired entries are deleted in small chunks between
    write groups, never holding verification up for long.

    By default this process owns the file: nonces are checked against an in-memory window
    (loaded from the file first; check-and-remember is atomic on the event loop) and every nonce
    accepted until the database starts its next group commit is appended as **one** row of the
    ``accepted_nonces`` table (:class:`~supervit.storage.DurableLog`). Memory holds each nonce until
    it expires (about 250 bytes for 10 minutes). With ``shared_file=True`` other processes may
    consume nonces from the same file at the same time: each consume is then one atomic
    insert-or-refuse on the ``nonces`` table's unique key instead (slower under load); every
    process sharing the file must use it (opening in this mode adopts the log into the table).

    A *companion* database (the node's ``actrix.db``, whose schema has an ``accepted_nonces``
    table laid out like this file's: one row of nonces per group commit) lets a request record its
    nonce in the same transaction as its own write: :meth:`reserve` remembers the nonce
    (atomically, in memory) and returns a :class:`NonceTicket` that either rides on that write or
    is appended to the log by :meth:`NonceTicket.settle`. The companion's nonces are loaded at
    start-up, counted and cleaned up with this file's; the companion itself is its owner's to open
    and close.
    """

    FILE_NAME = "nonce.db"

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        cleanup_interval_secs: float = 60.0,
        cleanup_chunk: int = 2000,
        shared_file: bool = False,
        companion: Database | None = None,
    ) -> None:
        if companion is not None and shared_file:
            raise ValueError("a companion database needs the single-process mode (shared_file=False)")
        self._db = db
        self._companion = companion
        self._clock = clock
        self._cleanup_interval = cleanup_interval_secs
        self._cleanup_chunk = cleanup_chunk
        self._cleanup_task: asyncio.Task[None] | None = None
        self._shared = shared_file
        self._window: NonceWindow | None = None
        self._loading: asyncio.Future[None] | None = None
        self._log: DurableLog[tuple[str, int], None] = DurableLog(
            db, _append_nonces, what="nonce(s)", policy=NODE_NONCE_BATCHING, single_statement=True
        )

    @classmethod
    async def open(
        cls,
        data_dir: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        cleanup_interval_secs: float = 60.0,
        synchronous: str = "FULL",
        shared_file: bool = False,
        companion: Database | None = None,
    ) -> SqliteNonceStorage:
        """Open (creating if missing) ``data_dir/nonce.db`` and start background cleanup.

        ``companion``: an open database with an ``accepted_nonces`` table (the node database at
        schema 3 or later) whose nonces count as consumed too (see the class docstring).
        """
        try:
            db = await Database.open(Path(data_dir) / cls.FILE_NAME, _NONCE_MIGRATIONS, synchronous=synchronous)
        except StorageError as exc:
            raise NonceStorageError(str(exc)) from exc
        try:
            store = cls(
                db,
                clock=clock,
                cleanup_interval_secs=cleanup_interval_secs,
                shared_file=shared_file,
                companion=companion,
            )
        except ValueError:
            await db.close()
            raise
        if shared_file:
            await store._adopt_log()
        else:
            try:
                await store._ready()
            except StorageError as exc:
                await db.close()
                raise NonceStorageError(f"nonce store failed: {exc}") from exc
        store._cleanup_task = asyncio.get_running_loop().create_task(store._cleanup_loop())
        return store

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def database(self) -> Database:
        """The nonce database (for commit metrics and readiness checks)."""
        return self._db

    @property
    def companion(self) -> Database | None:
        """The companion database whose writes may carry a nonce (None without one)."""
        return self._companion

    @property
    def remembered(self) -> int | None:
        """Nonces held in memory (expired ones until the next consume); None in shared-file mode,
        where only :meth:`count` knows."""
        if self._shared or self._window is None:
            return None
        return len(self._window)

    async def consume(self, nonce: str, expires_at: float) -> bool:
        now = int(self._clock())
        expiry = int(expires_at)
        try:
            if self._shared:

                def run(conn: sqlite3.Connection) -> bool:
                    return conn.execute(CONSUME_NONCE_SQL, (nonce, expiry, now)).rowcount == 1

                return await self._db.write(run, single_statement=True)
            window = self._window or await self._ready()
            if not window.consume(nonce, expiry, now):
                return False
            # Consumed in memory; answered once durable (if that fails the nonce stays refused).
            await self._log.append((nonce, expiry))
            return True
        except StorageError as exc:
            raise NonceStorageError(f"nonce store failed: {exc}") from exc

    async def reserve(self, nonce: str, expires_at: float) -> NonceTicket | None:
        """Remember ``nonce`` until ``expires_at`` (atomic check-and-remember) without waiting for
        the disk; None if it is already remembered (a replay).

        The returned ticket is not durable yet: record it in a companion write (ride it) and
        :meth:`NonceTicket.settle` it before the request is answered. Needs a companion database
        (single-process mode); raises :class:`NonceStorageError` if the file cannot be read at
        start-up.
        """
        if self._companion is None:
            raise RuntimeError("reserve() needs a companion database")
        expiry = int(expires_at)
        try:
            window = self._window or await self._ready()
        except StorageError as exc:
            raise NonceStorageError(f"nonce store failed: {exc}") from exc
        if not window.consume(nonce, expiry, int(self._clock())):
            return None
        return NonceTicket(self, nonce, expiry)

    def _log_nonce(self, nonce: str, expiry: int) -> asyncio.Future[None]:
        return self._log.append((nonce, expiry))

    async def _ready(self) -> NonceWindow:
        # The window starts with every unexpired nonce the file remembers (both tables).
        if self._window is None:
            if self._loading is None:
                self._loading = asyncio.ensure_future(self._load())
            loading = self._loading
            try:
                await asyncio.shield(loading)
            except BaseException:
                if loading.done():
                    self._loading = None  # the next consume tries again
                raise
        assert self._window is not None
        return self._window

    async def _adopt_log(self) -> None:
        # Shared mode checks the `nonces` table only: move what a single-process run logged there.
        now = int(self._clock())

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO nonces (nonce, expires_at) SELECT j.value, l.expires_at"
                " FROM accepted_nonces AS l, json_each(l.nonces) AS j WHERE l.expires_at >= ?"
                " ON CONFLICT (nonce) DO UPDATE SET expires_at = max(nonces.expires_at, excluded.expires_at)",
                (now,),
            )
            conn.execute("DELETE FROM accepted_nonces")

        try:
            await self._db.write(run)
        except StorageError as exc:
            await self._db.close()
            raise NonceStorageError(f"nonce store failed: {exc}") from exc

    async def _load(self) -> None:
        now = int(self._clock())

        def run(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            rows: list[tuple[str, int]] = conn.execute(
                "SELECT nonce, expires_at FROM nonces WHERE expires_at >= ?", (now,)
            ).fetchall()
            rows.extend(_logged(conn, now))
            return rows

        rows = await self._db.read(run)
        if self._companion is not None:
            rows.extend(await self._companion.read(lambda c: _logged(c, now)))
        window = NonceWindow()
        for nonce, expiry in rows:
            window.consume(nonce, expiry, now)
        self._window = window

    async def cleanup(self) -> int:
        """Delete expired nonces now (chunked); returns how many were removed."""
        removed = 0
        statements = [(self._db, NONCE_CLEANUP_SQL), (self._db, NONCE_LOG_CLEANUP_SQL)]
        if self._companion is not None:
            statements.append((self._companion, NONCE_LOG_CLEANUP_SQL))
        for db, sql in statements:
            while True:
                now, chunk = int(self._clock()), self._cleanup_chunk

                def run(
                    conn: sqlite3.Connection, sql: str = sql, now: int = now, chunk: int = chunk
                ) -> tuple[int, int]:
                    cursor = conn.execute(sql, (now, chunk))
                    if cursor.description is None:  # one row per nonce
                        return cursor.rowcount, cursor.rowcount
                    counts = cursor.fetchall()  # RETURNING the nonces of each deleted row
                    return len(counts), sum(n for (n,) in counts)

                rows, nonces = await db.write(run, single_statement=True)
                removed += nonces
                if rows < chunk:
                    break
        return removed

    async def count(self) -> int:
        """Nonces currently stored (expired ones included until cleaned up)."""
        count = await self._db.read(lambda c: int(c.execute(_COUNT_SQL).fetchone()[0]))
        if self._companion is not None:
            count += await self._companion.read(lambda c: int(c.execute(_LOG_COUNT_SQL).fetchone()[0]))
        return count

    async def _cleanup_loop(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                removed = await self.cleanup()
                if removed:
                    log.debug("removed %d expired nonces", removed)
            except StorageError:
                log.exception("nonce cleanup failed; will retry")

    async def close(self) -> None:
        if self._cleanup_task is not None:
            self._cleanup_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup_task
            self._cleanup_task = None
        await self._log.drain()  # nonces already accepted in memory reach the file first
        await self._db.close()
