"""A durable log: items that must be durable before they are answered, one write per group commit.

A request that must be durable before it is answered (a consumed nonce, an acknowledged report)
is :meth:`DurableLog.append`-ed: everything appended until the log's next operation starts is
written by **one** database operation (one appended row: a page or two), and each appender learns
the outcome once that operation has committed. Items arriving while the previous commit is on
disk join the next operation at no extra wait.

How items are grouped is one :class:`~supervit.storage.BatchPolicy` (every batching knob lives
in ``supervit/storage/_policy.py``; docs/performance.md, "Batching policy"): under load (other
items are usually waiting or on disk when one arrives) an operation starts at most every
``max_delay_secs`` after the previous one started, so each commit serves more items and costs
less CPU per item; a lone sequential caller (nothing else unsettled when it appends) never
waits. ``max_items`` waiting items start the operation at once.

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
from supervit.storage._policy import NODE_NONCE_BATCHING, BatchPolicy

__all__ = ["DurableLog"]

log = logging.getLogger(__name__)

# Weight of the newest observation in the moving average of company (items already unsettled
# when one arrives): a few arrivals move it, one odd arrival does not flip it.
_SMOOTHING = 0.1


Item = TypeVar("Item")
R = TypeVar("R")


class _Rejected(Exception):
    """The write operation itself raised for its items (not the database's commit)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class DurableLog(Generic[Item, R]):
    """One write operation per group commit for every item appended meanwhile (module docstring).

    ``write(conn, items)`` runs on the event loop inside the group's transaction and returns the
    operation's result; ``on_committed(items, result)`` (optional) runs on the loop once it has
    committed, before any appender resumes. ``what`` names the items in error messages.
    ``single_statement=True`` promises that ``write`` executes at most one statement (see
    :meth:`Database.write`): the operation then skips its SAVEPOINT.
    """

    def __init__(
        self,
        db: Database,
        write: Callable[[sqlite3.Connection, list[Item]], R],
        *,
        what: str,
        on_committed: Callable[[list[Item], R], None] | None = None,
        policy: BatchPolicy = NODE_NONCE_BATCHING,
        single_statement: bool = False,
    ) -> None:
        self._db = db
        self._single = single_statement
        self._write = write
        self._what = what
        self._on_committed = on_committed
        self.policy = policy
        self._pending: list[tuple[Item, asyncio.Future[R]]] = []
        self._open: asyncio.Task[None] | None = None  # the queued operation that will take _pending
        self._wake: asyncio.Future[None] | None = None  # set when the queued operation may start early
        self._in_flight: set[asyncio.Task[None]] = set()
        self._unsettled = 0  # items taken by operations not settled yet
        self._last_start = float("-inf")
        self._company = 0.0

    @property
    def busy(self) -> bool:
        """Whether any appended item is not settled yet."""
        return bool(self._pending or self._in_flight)

    def append(self, item: Item) -> asyncio.Future[R]:
        """Queue ``item``; the future resolves once it is committed (or fails with StorageError)."""
        loop = asyncio.get_running_loop()
        pending = self._pending
        self._company += (len(pending) + self._unsettled - self._company) * _SMOOTHING
        done: asyncio.Future[R] = loop.create_future()
        pending.append((item, done))
        if self._open is None:
            self._open = task = loop.create_task(self._run())
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        elif len(pending) >= self.policy.max_items and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        return done

    async def drain(self) -> None:
        """Wait until every item appended so far is settled (later ones are not waited for)."""
        if self._in_flight:
            await asyncio.gather(*list(self._in_flight))

    def _take(self) -> list[tuple[Item, asyncio.Future[R]]]:
        taken, self._pending = self._pending, []
        self._open = None  # later items queue the next operation
        self._unsettled += len(taken)
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        policy = self.policy
        wait = self._last_start + policy.max_delay_secs - loop.time()
        if wait > 0 and self._company >= policy.under_load and len(self._pending) < policy.max_items:
            self._wake = wake = loop.create_future()
            timer = loop.call_later(wait, _set_if_pending, wake)
            try:
                await wake
            finally:
                timer.cancel()
                self._wake = None
        taken: list[tuple[Item, asyncio.Future[R]]] = []

        def run(conn: sqlite3.Connection) -> R:
            # On the event loop, when the database starts the group that carries this operation.
            self._last_start = loop.time()
            taken.extend(self._take())
            return self._call_write(conn, [item for item, _ in taken])

        try:
            try:
                result = await self._db.write(run, single_statement=self._single)
            except _Rejected as rejected:
                await self._split(taken, rejected.error)
                return
            except Exception as exc:
                if not taken and self._open is asyncio.current_task():
                    taken = self._take()  # the group failed before this operation ran
                self._fail(taken, exc)
                return
            self._settle(taken, result)
        finally:
            self._unsettled -= len(taken)

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
            if not done.done():  # else the appender went away; the outcome is the same
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
            result = await self._db.write(run, single_statement=self._single)
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


def _set_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
