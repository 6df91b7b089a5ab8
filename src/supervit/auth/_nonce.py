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
    """

    FILE_NAME = "nonce.db"
    # Chunked deletes (``?`` = now, chunk size) run by :meth:`cleanup`; subclasses sharing a
    # database with more expiring tables add theirs.
    cleanup_statements: tuple[str, ...] = (NONCE_CLEANUP_SQL, NONCE_LOG_CLEANUP_SQL)
    # What :meth:`count` adds up; a subclass keeping its logged nonces elsewhere names that table.
    count_sql: str = (
        "SELECT (SELECT COUNT(*) FROM nonces)"
        " + (SELECT COALESCE(SUM(json_array_length(nonces)), 0) FROM accepted_nonces)"
    )

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        cleanup_interval_secs: float = 60.0,
        cleanup_chunk: int = 2000,
        shared_file: bool = False,
    ) -> None:
        self._db = db
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
    ) -> SqliteNonceStorage:
        """Open (creating if missing) ``data_dir/nonce.db`` and start background cleanup."""
        try:
            db = await Database.open(Path(data_dir) / cls.FILE_NAME, _NONCE_MIGRATIONS, synchronous=synchronous)
        except StorageError as exc:
            raise NonceStorageError(str(exc)) from exc
        store = cls(db, clock=clock, cleanup_interval_secs=cleanup_interval_secs, shared_file=shared_file)
        if shared_file:
            await store._adopt_log()
        else:
            await store._ready()
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
            for text, expiry in conn.execute(
                "SELECT nonces, expires_at FROM accepted_nonces WHERE expires_at >= ?", (now,)
            ):
                rows.extend((nonce, expiry) for nonce in json.loads(text))
            return rows

        window = NonceWindow()
        for nonce, expiry in await self._db.read(run):
            window.consume(nonce, expiry, now)
        self._window = window

    async def cleanup(self) -> int:
        """Delete expired nonces now (chunked); returns how many were removed."""
        removed = 0
        for sql in self.cleanup_statements:
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

                rows, nonces = await self._db.write(run, single_statement=True)
                removed += nonces
                if rows < chunk:
                    break
        return removed

    async def count(self) -> int:
        """Nonces currently stored (expired ones included until cleaned up)."""
        sql = self.count_sql
        return await self._db.read(lambda c: int(c.execute(sql).fetchone()[0]))

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
