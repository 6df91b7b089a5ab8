"""Many small durable writes as one database operation per group commit.

A request that must be durable before it is answered (a consumed nonce, an acknowledged report)
is :meth:`WriteBatcher.submit`-ted: everything submitted until the database starts its next group
is written by **one** operation (one statement, a page or two), and each submitter learns the
outcome once that operation has committed. The operation is queued at once and collects its items
only when it runs, so items arriving while the previous commit is on disk join it at no extra
wait. Under load (recent operations carried several items each) operations are started at most
every ``min_spacing_secs``, so each carries more items (5 ms measured best on the 2-core
benchmark machine, docs/performance.md); a lone sequential caller (one item per operation)
never waits for the spacing.

If the operation itself fails for its items (one item cannot be encoded or stored), the items are
split in halves and written again until the offending item is refused alone: one bad item never
fails the others. A failed commit (the disk) fails every item of its operation.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import Generic, TypeVar

from supervit._exceptions import StorageError
from supervit.storage._db import Database

__all__ = ["DEFAULT_MIN_SPACING_SECS", "WriteBatcher"]

log = logging.getLogger(__name__)

DEFAULT_MIN_SPACING_SECS = 0.005
_UNDER_LOAD_ITEMS = 1.5

Item = TypeVar("Item")
R = TypeVar("R")


class _Rejected(Exception):
    """The write operation itself raised for its items (not the database's commit)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class WriteBatcher(Generic[Item, R]):
    """One write operation per group commit for every item submitted meanwhile.

    ``write(conn, items)`` runs on the event loop inside the group's transaction and returns the
    operation's result; ``on_committed(items, result)`` (optional) runs on the loop once it has
    committed, before any submitter resumes. ``what`` names the items in error messages.
    """

    def __init__(
        self,
        db: Database,
        write: Callable[[sqlite3.Connection, list[Item]], R],
        *,
        what: str,
        on_committed: Callable[[list[Item], R], None] | None = None,
        min_spacing_secs: float = DEFAULT_MIN_SPACING_SECS,
    ) -> None:
        self._db = db
        self._write = write
        self._what = what
        self._on_committed = on_committed
        self._spacing = min_spacing_secs
        self._pending: list[tuple[Item, asyncio.Future[R]]] = []
        self._open: asyncio.Task[None] | None = None  # the queued operation that will take _pending
        self._in_flight: set[asyncio.Task[None]] = set()
        self._last_start = float("-inf")
        self._recent_size = 0.0  # moving average of items per operation: one odd batch does not flip it

    @property
    def busy(self) -> bool:
        """Whether any submitted item is not settled yet."""
        return bool(self._pending or self._in_flight)

    def submit(self, item: Item) -> asyncio.Future[R]:
        """Queue ``item``; the future resolves once it is committed (or fails with StorageError)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, done))
        if self._open is None:
            self._open = task = loop.create_task(self._run())
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return done

    async def drain(self) -> None:
        """Wait until every item submitted so far is settled (later ones are not waited for)."""
        if self._in_flight:
            await asyncio.gather(*list(self._in_flight))

    def _take(self) -> list[tuple[Item, asyncio.Future[R]]]:
        taken, self._pending = self._pending, []
        self._open = None  # later items queue the next operation
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_start + self._spacing - loop.time()
        if wait > 0 and self._recent_size > _UNDER_LOAD_ITEMS:
            await asyncio.sleep(wait)
        taken: list[tuple[Item, asyncio.Future[R]]] = []

        def run(conn: sqlite3.Connection) -> R:
            # On the event loop, when the database starts the group that carries this operation.
            self._last_start = loop.time()
            taken.extend(self._take())
            self._recent_size += (len(taken) - self._recent_size) * 0.25
            return self._call_write(conn, [item for item, _ in taken])

        try:
            result = await self._db.write(run)
        except _Rejected as rejected:
            await self._split(taken, rejected.error)
            return
        except Exception as exc:
            if not taken and self._open is asyncio.current_task():
                taken = self._take()  # the group failed before this operation ran
            self._fail(taken, exc)
            return
        self._settle(taken, result)

    def _settle(self, taken: list[tuple[Item, asyncio.Future[R]]], result: R) -> None:
        if self._on_committed is not None:
            self._on_committed([item for item, _ in taken], result)
        for _, done in taken:
            if not done.done():
                done.set_result(result)

    def _fail(self, taken: list[tuple[Item, asyncio.Future[R]]], exc: BaseException) -> None:
        log.error("%d %s could not be stored: %s", len(taken), self._what, exc)
        failure = exc if isinstance(exc, StorageError) else StorageError(f"{self._what} not stored: {exc}")
        for _, done in taken:
            if not done.done():  # else the submitter went away; the outcome is the same
                done.set_exception(failure)

    async def _split(self, taken: list[tuple[Item, asyncio.Future[R]]], error: Exception) -> None:
        """The operation itself refused these items: write the halves separately (in one group)
        until the offending item fails alone, so one bad item never fails the others."""
        if len(taken) <= 1:
            self._fail(taken, error)
            return
        middle = len(taken) // 2
        await asyncio.gather(self._write_part(taken[:middle]), self._write_part(taken[middle:]))

    async def _write_part(self, part: list[tuple[Item, asyncio.Future[R]]]) -> None:
        def run(conn: sqlite3.Connection) -> R:
            return self._call_write(conn, [item for item, _ in part])

        try:
            result = await self._db.write(run)
        except _Rejected as rejected:
            await self._split(part, rejected.error)
        except Exception as exc:
            self._fail(part, exc)
        else:
            self._settle(part, result)

    def _call_write(self, conn: sqlite3.Connection, items: list[Item]) -> R:
        try:
            return self._write(conn, items)
        except sqlite3.OperationalError:
            raise  # the database itself (disk full, I/O, read-only): splitting would not help
        except Exception as exc:
            raise _Rejected(exc) from exc
