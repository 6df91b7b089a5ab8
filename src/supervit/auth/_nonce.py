"""Nonce stores: remember each consumed nonce until it expires; check-and-remember is atomic."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from supervit._exceptions import NonceStorageError, StorageError
from supervit.storage import Database, Migration

__all__ = [
    "CONSUME_NONCE_SQL",
    "NONCE_CLEANUP_SQL",
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
)

# An expired row may be taken over: its credential could no longer pass the window check anyway.
CONSUME_NONCE_SQL = """
INSERT INTO nonces (nonce, expires_at) VALUES (?, ?)
ON CONFLICT (nonce) DO UPDATE SET expires_at = excluded.expires_at WHERE nonces.expires_at < ?
"""
NONCE_CLEANUP_SQL = """
DELETE FROM nonces WHERE nonce IN (SELECT nonce FROM nonces WHERE expires_at < ? LIMIT ?)
"""


class SqliteNonceStorage(NonceStorage):
    """Durable store: ``nonce.db`` in ``data_dir`` (WAL, group commit, unique constraint).

    A ``consume`` returns only after its nonce is committed, so a nonce accepted before a crash
    or restart is still refused after it. Expired rows are deleted in small chunks between
    write groups, never holding verification up for long.
    """

    FILE_NAME = "nonce.db"
    # Chunked deletes (``?`` = now, chunk size) run by :meth:`cleanup`; subclasses sharing a
    # database with more expiring tables add theirs.
    cleanup_statements: tuple[str, ...] = (NONCE_CLEANUP_SQL,)

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        cleanup_interval_secs: float = 60.0,
        cleanup_chunk: int = 2000,
    ) -> None:
        self._db = db
        self._clock = clock
        self._cleanup_interval = cleanup_interval_secs
        self._cleanup_chunk = cleanup_chunk
        self._cleanup_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        data_dir: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        cleanup_interval_secs: float = 60.0,
        synchronous: str = "FULL",
    ) -> SqliteNonceStorage:
        """Open (creating if missing) ``data_dir/nonce.db`` and start background cleanup."""
        try:
            db = await Database.open(Path(data_dir) / cls.FILE_NAME, _NONCE_MIGRATIONS, synchronous=synchronous)
        except StorageError as exc:
            raise NonceStorageError(str(exc)) from exc
        store = cls(db, clock=clock, cleanup_interval_secs=cleanup_interval_secs)
        store._cleanup_task = asyncio.get_running_loop().create_task(store._cleanup_loop())
        return store

    @property
    def path(self) -> Path:
        return self._db.path

    async def consume(self, nonce: str, expires_at: float) -> bool:
        now = int(self._clock())
        expiry = int(expires_at)

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(CONSUME_NONCE_SQL, (nonce, expiry, now)).rowcount == 1

        try:
            return await self._db.write(run, single_statement=True)
        except StorageError as exc:
            raise NonceStorageError(f"nonce store failed: {exc}") from exc

    async def cleanup(self) -> int:
        """Delete expired nonces now (chunked); returns how many were removed."""
        removed = 0
        for sql in self.cleanup_statements:
            while True:
                now, chunk = int(self._clock()), self._cleanup_chunk

                def run(conn: sqlite3.Connection, sql: str = sql, now: int = now, chunk: int = chunk) -> int:
                    return conn.execute(sql, (now, chunk)).rowcount

                n = await self._db.write(run, single_statement=True)
                removed += n
                if n < chunk:
                    break
        return removed

    async def count(self) -> int:
        """Rows currently stored (expired ones included until cleaned up)."""
        return await self._db.read(lambda c: int(c.execute("SELECT COUNT(*) FROM nonces").fetchone()[0]))

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
        await self._db.close()
